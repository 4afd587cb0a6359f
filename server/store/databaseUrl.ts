import fs from "node:fs";
import path from "node:path";

export const DEFAULT_DATABASE_URL = "file:./data/tabgrid.db";

/**
 * The SQLite file named by DATABASE_URL (default ./data/tabgrid.db, relative to the
 * working directory), with its folder created so a fresh checkout starts without setup.
 */
export function databaseFile(url = process.env.DATABASE_URL || DEFAULT_DATABASE_URL): string {
  if (!url.startsWith("file:")) {
    throw new Error(`DATABASE_URL must be a SQLite file: URL (got ${JSON.stringify(url)})`);
  }
  const file = path.resolve(url.slice("file:".length));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  return file;
}
