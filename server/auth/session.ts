import type { IncomingMessage } from "node:http";
import { getToken } from "next-auth/jwt";
import type { Db } from "../store/prisma";
import { apiKeyInUse } from "./apiKeys";
import { vouchFor } from "../http/vouchedCallers";

export interface SessionUser {
  id: string;
  email: string;
  role: string;
}

/** `keyId`: the API key the caller signed with (a revoked key's volunteer sockets are closed). */
export type Identity = { user: SessionUser | null; keyId?: string; error?: string };

function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const raw = part.slice(eq + 1).trim();
    // A malformed escape (%E0%A4%A) is a cookie we cannot read, not a server error.
    let value = raw;
    try {
      value = decodeURIComponent(raw);
    } catch {
      /* kept as sent */
    }
    out[part.slice(0, eq).trim()] = value;
  }
  return out;
}

/**
 * Who is calling: a bearer API key (CLI, scripts) or the next-auth session cookie (pages,
 * including WebSocket upgrades, which carry the cookie). A key that is present but wrong is
 * an error rather than an anonymous call, so a typo in a key is reported, not ignored.
 */
export async function identify(db: Db, req: IncomingMessage, secret: string): Promise<Identity> {
  const auth = req.headers.authorization;
  if (auth) {
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    const found = m ? await apiKeyInUse(db, m[1]) : null;
    if (!found) return { user: null, error: "Invalid API key." };
    vouchFor(req);
    return { user: found.user, keyId: found.keyId };
  }
  const cookies = parseCookies(req.headers.cookie);
  if (!Object.keys(cookies).some((k) => k.includes("next-auth.session-token"))) return { user: null };
  const token = await getToken({
    req: { cookies, headers: req.headers } as never,
    secret,
    secureCookie: Object.keys(cookies).some((k) => k.startsWith("__Secure-next-auth.session-token")),
  });
  if (!token?.sub) return { user: null };
  // Read the role from the database so an admin change applies without signing in again.
  const user = await db.user.findUnique({ where: { id: token.sub }, select: { id: true, email: true, role: true } });
  if (user) vouchFor(req);
  return { user };
}
