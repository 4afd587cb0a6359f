// One read of the hot store: the API key that signs a call and its user, by the key's hash.

export interface ApiKeyRow {
  id: string;
  revokedAt: Date | null;
  lastUsedAt: Date | null;
  user: { id: string; email: string; role: string };
}

/** The SQL both stores read an API key with, given the placeholder of the key's hash (`?`, `$1`). */
export const apiKeySql = (placeholder: string) => `SELECT k."id", k."revokedAt", k."lastUsedAt", u."id" AS "userId", u."email", u."role"
  FROM "ApiKey" k JOIN "User" u ON u."id" = k."userId" WHERE k."hash" = ${placeholder}`;

type Stamp = string | number | Date | null;

export type ApiKeySqlRow = { id: string; revokedAt: Stamp; lastUsedAt: Stamp; userId: string; email: string; role: string };

/** A row of apiKeySql as an ApiKeyRow (SQLite returns times as text, PostgreSQL as Dates). */
export function apiKeyRow(r: ApiKeySqlRow | undefined): ApiKeyRow | undefined {
  const time = (t: Stamp) => (t === null ? null : new Date(t));
  return r && { id: r.id, revokedAt: time(r.revokedAt), lastUsedAt: time(r.lastUsedAt), user: { id: r.userId, email: r.email, role: r.role } };
}
