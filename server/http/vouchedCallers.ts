import type http from "node:http";

// The credentials the server has verified lately, so the load gate (loadGate.ts), which runs
// before any lookup, can tell a caller by its key or session without trusting one it was only
// sent: a made-up one counts as its network address instead.

/** The API key or session cookie a request carries, as identify() reads it; undefined without one. */
export function credentialOf(req: http.IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  // Spelt `bearer`, `BEARER` or with a tab, it is one key. A header that names no key is
  // refused by identify(); here it counts as its address.
  if (auth) {
    const key = /^Bearer\s+(\S+)$/i.exec(auth)?.[1];
    return key ? `key ${key}` : undefined;
  }
  const session = /(?:^|;\s*)(?:__Secure-)?next-auth\.session-token=([^;]+)/.exec(req.headers.cookie ?? "");
  return session ? `session ${session[1]}` : undefined;
}

/** Most credentials remembered as verified; the oldest are forgotten first (their next call counts as their address once). */
const MAX_VOUCHED = 10_000;
/** Credentials identify() has verified, oldest first. */
const vouched = new Map<string, true>();

/**
 * identify() verified the request's API key or session: from now on its calls count as that
 * caller's, not its address's.
 */
export function vouchFor(req: http.IncomingMessage) {
  const credential = credentialOf(req);
  if (!credential || vouched.has(credential)) return;
  vouched.set(credential, true);
  if (vouched.size > MAX_VOUCHED) vouched.delete(vouched.keys().next().value!);
}

/** Whether identify() verified this credential (as credentialOf gives it) lately. */
export function isVouched(credential: string): boolean {
  return vouched.has(credential);
}
