import fs from "node:fs";
import path from "node:path";

export const DEFAULT_DATABASE_URL = "file:./data/tabgrid.db";

export type DatabaseKind = "sqlite" | "postgres";

/** Which engine a DATABASE_URL names: `file:` is SQLite, `postgres://` or `postgresql://` PostgreSQL. */
export function databaseKind(url = process.env.DATABASE_URL || DEFAULT_DATABASE_URL): DatabaseKind {
  if (url.startsWith("file:")) return "sqlite";
  if (/^postgres(ql)?:\/\//.test(url)) return "postgres";
  throw new Error(`DATABASE_URL must be a SQLite file: URL or a postgres:// URL (got ${JSON.stringify(redactUrl(url))})`);
}

/** A URL fit for a log or an error: its password (user:password@, or ?password=) replaced. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@]*@/i, "$1***@").replace(/([?&]password=)[^&#]*/gi, "$1***");
}

/**
 * The SQLite file named by DATABASE_URL (default ./data/tabgrid.db, relative to the
 * working directory), with its folder created so a fresh checkout starts without setup.
 */
export function databaseFile(url = process.env.DATABASE_URL || DEFAULT_DATABASE_URL): string {
  if (!url.startsWith("file:")) {
    throw new Error(`DATABASE_URL must be a SQLite file: URL here (got ${JSON.stringify(redactUrl(url))})`);
  }
  const file = path.resolve(url.slice("file:".length));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  return file;
}
