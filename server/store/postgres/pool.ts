import { createRequire } from "node:module";
import type pg from "pg";

/** pg, loaded by the first pool: a server on SQLite never needs it. */
const load = () => createRequire(import.meta.url)("pg") as typeof import("pg");

// The pool behind both Prisma's PostgreSQL adapter and the hot path's raw SQL (hotStore.ts).

const INT8 = 20;
const NUMERIC = 1700;
const TIMESTAMP = 1114;

/**
 * Raw queries read what SQLite gives: numbers for int8 (millicredit sums, COUNT) and NUMERIC
 * (SUM of int8), which stay far below 2^53 here, and timestamps without a zone as UTC, the way
 * Prisma writes them (pg would read them in the process's local zone). Prisma's own queries
 * bring parsers of their own and are not affected.
 */
const parsers: Record<number, (value: string) => unknown> = {
  [INT8]: Number,
  [NUMERIC]: Number,
  [TIMESTAMP]: (v) => new Date(`${v.replace(" ", "T")}Z`),
};

export function createPool(connectionString: string, max = Number(process.env.PG_POOL_SIZE) || 10): pg.Pool {
  const pgm = load();
  const pool = new pgm.Pool({
    connectionString,
    max,
    // A CLI command or the seed exits when it is done, without waiting for idle connections to time out.
    allowExitOnIdle: true,
    types: {
      getTypeParser: ((oid: number, format?: string) => parsers[oid] ?? pgm.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
    },
  });
  // An idle connection the server closed (a restart, a terminated backend) is dropped from the
  // pool, and the next query opens another; unheard, its error would end the process.
  pool.on("error", () => undefined);
  return pool;
}

/** Runs `fn` in one transaction on one connection of the pool; rolls back if it throws. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const out = await fn(client);
    await client.query("COMMIT");
    return out;
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}
