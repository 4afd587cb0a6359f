import type http from "node:http";
import type { SharedLimiter } from "../cluster/limiter";
import { addressKey } from "../coordinator/network";

/** next-auth's sign-in with email and password: each attempt hashes the password (scrypt). */
export const CREDENTIALS_CALLBACK = "/api/auth/callback/credentials";
/** Sign-in attempts one address may make at once, then one every SIGN_IN_EVERY_S seconds. */
export const SIGN_IN_BURST = 20;
export const SIGN_IN_EVERY_S = 6;

/**
 * Sign-in attempts per network address. Each costs a 32 MiB scrypt on libuv's thread pool,
 * which blob reads, uploads and the disk checks share: 64 wrong passwords at once from one
 * anonymous client held blob downloads 8.7 s and health 2 s, and sign-in passes the load gate
 * (an admin must reach the dashboard of a busy server). Past the address's budget an attempt
 * gets 429 and `Retry-After`, with the error next-auth's client reads (`TooManyAttempts`).
 */
export function signInLimit(limiter: SharedLimiter, ip: (req: http.IncomingMessage) => string) {
  return async (req: http.IncomingMessage, res: http.ServerResponse, pathname: string): Promise<boolean> => {
    if (req.method !== "POST" || pathname !== CREDENTIALS_CALLBACK) return false;
    if (await limiter.take(addressKey(ip(req)))) return false;
    req.resume();
    const host = typeof req.headers.host === "string" && /^[\w.:[\]-]{1,300}$/.test(req.headers.host) ? req.headers.host : "localhost";
    res.writeHead(429, { "content-type": "application/json", "retry-after": String(SIGN_IN_EVERY_S), "cache-control": "no-store" });
    res.end(JSON.stringify({ url: `http://${host}/signin?error=TooManyAttempts` }));
    return true;
  };
}
