import { createHmac, timingSafeEqual } from "node:crypto";

// Signed blob URLs. A task that reads a blob (its program's code, its unit's input chunk)
// carries a token for it, and GET /api/blobs/<hash>?t=<token> serves the blob to whoever holds
// one, on any node: every node signs with the same secret (NEXTAUTH_SECRET, required in cluster
// mode). Without tokens a node served only the blobs of the jobs it runs itself (liveBlobs.ts),
// and a cluster's volunteer whose download the load balancer sent to another node, or that
// reconnected to another node mid-task, got a 404 and its task failed.

const HOUR_MS = 3600_000;
/**
 * A token is good until this many hours after the hour it was made in: a task may wait in the
 * volunteer's window behind another before it fetches its blobs, and a prefetch hint is read
 * a round ahead. Anyone who got a task already had the bytes; the bound only stops a token
 * from being good forever.
 */
const VALID_HOURS = 25;
/** Tokens remembered per hour (the same blob's token is made once an hour, not per task). */
const CACHED = 50_000;
/** 128 bits of the HMAC, as base64url. */
const MAC_CHARS = 22;

export class BlobTokens {
  private readonly key: Buffer;
  private hour = -1;
  private readonly cache = new Map<string, string>();

  constructor(secret: string, private readonly now: () => number = Date.now) {
    // A key of its own, derived from the secret, so a token is never a session's MAC.
    this.key = createHmac("sha256", secret).update("tabgrid blob tokens").digest();
  }

  /** A token for the blob, good for VALID_HOURS to VALID_HOURS + 1 hours from now. */
  tokenFor(hash: string): string {
    const hour = Math.floor(this.now() / HOUR_MS);
    if (hour !== this.hour || this.cache.size >= CACHED) {
      this.hour = hour;
      this.cache.clear();
    }
    let token = this.cache.get(hash);
    if (token === undefined) {
      const expires = (hour + VALID_HOURS + 1).toString(36);
      token = `${expires}.${this.mac(hash, expires)}`;
      this.cache.set(hash, token);
    }
    return token;
  }

  /** Whether `token` was made by a node of this server for this blob and has not expired. */
  verify(hash: string, token: string | null | undefined): boolean {
    if (typeof token !== "string" || token.length > 64) return false;
    const dot = token.indexOf(".");
    if (dot < 1) return false;
    const expires = token.slice(0, dot);
    const hours = parseInt(expires, 36);
    if (!/^[0-9a-z]{1,10}$/.test(expires) || !(hours * HOUR_MS > this.now())) return false;
    const given = Buffer.from(token.slice(dot + 1));
    const wanted = Buffer.from(this.mac(hash, expires));
    return given.length === wanted.length && timingSafeEqual(given, wanted);
  }

  private mac(hash: string, expires: string): string {
    return createHmac("sha256", this.key).update(`${hash}:${expires}`).digest("base64url").slice(0, MAC_CHARS);
  }
}
