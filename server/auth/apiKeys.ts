import crypto from "node:crypto";
import type { Db } from "../store/prisma";
import { hotStore } from "../store/hotStore";

// Keys carry 256 random bits, so a fast hash is enough to store them (unlike passwords).
const sha256 = (s: string) => crypto.createHash("sha256").update(s).digest("hex");
const KEY_PREFIX = "tg_";
/** How often a key's lastUsedAt is brought up to date. */
const LAST_USED_EVERY_MS = 60_000;

export async function createApiKey(db: Db, userId: string, name: string) {
  const key = KEY_PREFIX + crypto.randomBytes(32).toString("base64url");
  const row = await db.apiKey.create({
    data: { userId, name, prefix: key.slice(0, 10), hash: sha256(key) },
    select: { id: true, name: true, prefix: true, createdAt: true },
  });
  return { ...row, key };
}

export interface KeyUser {
  id: string;
  email: string;
  role: string;
}

/** The user a bearer key belongs to, or null for unknown or revoked keys. */
export async function userForApiKey(db: Db, key: string): Promise<KeyUser | null> {
  return (await apiKeyInUse(db, key))?.user ?? null;
}

/** The key's id and user, or null for unknown or revoked keys. */
export async function apiKeyInUse(db: Db, key: string): Promise<{ keyId: string; user: KeyUser } | null> {
  if (!key.startsWith(KEY_PREFIX) || key.length > 100) return null;
  // Raw SQL, not the query engine: every call a key signs (a CLI polls twice a second) reads it.
  const row = await hotStore(db).apiKey(sha256(key));
  if (!row || row.revokedAt) return null;
  // The CLI polls every half second: record use at most once a minute, not a write per call.
  // Checked on the row just read first: even a write that changes nothing waits for the
  // database's write lock, behind whatever commit is in progress, on every call.
  const now = new Date();
  const stale = new Date(now.getTime() - LAST_USED_EVERY_MS);
  if (!row.lastUsedAt || row.lastUsedAt < stale) {
    await db.apiKey.updateMany({
      where: { id: row.id, OR: [{ lastUsedAt: null }, { lastUsedAt: { lt: stale } }] },
      data: { lastUsedAt: now },
    });
  }
  return { keyId: row.id, user: row.user };
}

export function listApiKeys(db: Db, userId: string) {
  return db.apiKey.findMany({
    where: { userId, revokedAt: null },
    select: { id: true, name: true, prefix: true, createdAt: true, lastUsedAt: true },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
  });
}

export async function revokeApiKey(db: Db, userId: string, id: string): Promise<boolean> {
  const { count } = await db.apiKey.updateMany({ where: { id, userId, revokedAt: null }, data: { revokedAt: new Date() } });
  return count > 0;
}
