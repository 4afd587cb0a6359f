import crypto from "node:crypto";
import { promisify } from "node:util";
import { Semaphore } from "async-mutex";

const scrypt = promisify(crypto.scrypt) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: crypto.ScryptOptions,
) => Promise<Buffer>;

// scrypt with N=2^15, r=8, p=1 (OWASP's minimum for scrypt): ~50 ms and 32 MiB per hash,
// which makes offline guessing expensive. Parameters are stored with each hash so they can
// be raised later without invalidating existing passwords.
const N = 1 << 15, R = 8, P = 1, KEYLEN = 32;

/**
 * Hashes computed at once. scrypt runs on libuv's thread pool (4 threads), which file reads
 * and writes share: a flood of sign-ins or sign-ups took all four, and blob downloads and
 * uploads waited seconds behind them. Hashes beyond these wait their turn.
 */
export const CONCURRENT_HASHES = 2;
const hashing = new Semaphore(CONCURRENT_HASHES);
let running = 0;

/** Hashes being computed right now (for tests). */
export const hashesRunning = () => running;

async function derive(password: string, salt: Buffer, keylen: number, options: crypto.ScryptOptions): Promise<Buffer> {
  return hashing.runExclusive(async () => {
    running++;
    try {
      return await scrypt(password.normalize("NFKC"), salt, keylen, options);
    } finally {
      running--;
    }
  });
}

export async function hashPassword(password: string): Promise<string> {
  const salt = crypto.randomBytes(16);
  const key = await derive(password, salt, KEYLEN, { N, r: R, p: P, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${N}$${R}$${P}$${salt.toString("base64url")}$${key.toString("base64url")}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [alg, n, r, p, salt, hash] = stored.split("$");
  if (alg !== "scrypt" || !salt || !hash) return false;
  const expected = Buffer.from(hash, "base64url");
  const key = await derive(password, Buffer.from(salt, "base64url"), expected.length, {
    N: Number(n), r: Number(r), p: Number(p), maxmem: 64 * 1024 * 1024,
  });
  return crypto.timingSafeEqual(key, expected);
}
