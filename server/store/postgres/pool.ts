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

/**
 * A transaction left idle this long is ended by PostgreSQL, and its locks with it. A node
 * frozen mid-batch (a paused VM, a stopped process) would otherwise hold the rows it locked
 * (the slices it writes into, the volunteers it pays) for as long as it stays frozen, and no
 * other node could take its slices over or pay those volunteers. The slice lease's length: a
 * node stalled past it has lost its slices anyway. Its batch fails when it thaws, and is
 * written again, fenced then (fencePg.ts). Prisma gives up on its own transactions after 5 s.
 */
const idleInTransactionMs = () => (Number(process.env.SLICE_LEASE_SECONDS) || 10) * 1000;

export function createPool(connectionString: string, max = Number(process.env.PG_POOL_SIZE) || 10): pg.Pool {
  const pgm = load();
  const pool = new pgm.Pool({
    connectionString,
    max,
    idle_in_transaction_session_timeout: idleInTransactionMs(),
    // A CLI command or the seed exits when it is done, without waiting for idle connections to time out.
    allowExitOnIdle: true,
    types: {
      getTypeParser: ((oid: number, format?: string) => parsers[oid] ?? pgm.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
    },
  });
  // An idle connection the server closed (a restart, a terminated backend) is dropped from the
  // pool, and the next query opens another; unheard, its error would end the process.
  pool.on("error", () => undefined);
  // The same for a connection in use: one whose idle transaction PostgreSQL ended (above) while
  // this process was frozen between two statements hears of it when it thaws, with no query to
  // fail. Unheard, that error ended the process; heard, the next query fails, its batch is
  // written again, and the pool drops the connection.
  pool.on("connect", (client) => client.on("error", () => undefined));
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
