import crypto from "node:crypto";
import type pg from "pg";

const names = new Map<string, string>();

/**
 * A hot statement as a named prepared statement: PostgreSQL parses and plans it once per
 * connection instead of on every batch (an unnamed statement is planned each time, which
 * cost the database more CPU than running the `unnest` batches themselves). Named by a hash
 * of its text, so one text has one name on every connection.
 */
export function prepared(text: string, values: unknown[]): pg.QueryConfig {
  let name = names.get(text);
  if (!name) {
    name = `tg_${crypto.createHash("sha1").update(text).digest("hex").slice(0, 24)}`;
    names.set(text, name);
  }
  return { name, text, values };
}
