import type { PersistOp, ReliabilityRow } from "../services/jobs/batchSql";
import type { Db } from "./prisma";
import { dbKind } from "./prisma";
import type { DatabaseKind } from "./databaseUrl";
import { SqliteHotStore } from "./sqliteHotStore";
import { PgHotStore } from "./postgres/pgHotStore";
import type { ApiKeyRow } from "./apiKeyRow";
import type { RoundRow } from "./roundRow";

/**
 * The hot path's SQL, behind one interface with a SQLite and a PostgreSQL implementation:
 * the group commit's batches (results, verdicts, payouts, job endings, new jobs) and the few
 * reads that must not queue behind the query engine (hellos come in bursts, a finished job
 * reads thousands of outputs). Everything else goes through Prisma, which speaks both.
 */
/** One unit's stored output (JSON text, null until it has one). */
export type OutputRow = { round: number; idx: number; output: string | null; done: boolean };

export interface HotStore {
  readonly kind: DatabaseKind;
  /** Opens what writes (SQLite's writer thread), so the first batch does not wait for it. */
  ready(): Promise<void>;
  /** Writes one batch in one transaction: all of it or nothing (see batchSql.ts for what each op does). */
  write(ops: PersistOp[]): Promise<void>;
  /** A job's units' outputs in unit order, and whether each is done. */
  unitOutputs(jobId: string): Promise<Array<{ output: string | null; done: boolean }>>;
  /** The same, `rows` units at a time (downloads read a page, send it, then read the next). */
  outputPages(jobId: string, rows: number): AsyncGenerator<OutputRow[]>;
  /** Bytes of a job's stored outputs, summed by the database without reading them. */
  outputBytes(jobId: string): Promise<number>;
  /** The hash of a volunteer's secret, if the volunteer is known. */
  volunteerTokenHash(volunteerId: string): Promise<string | undefined>;
  /** Reliability rows that exist among these ids. */
  reliabilityRows(ids: string[]): Promise<ReliabilityRow[]>;
  /** A round's row and its job's stop flag: read by every step of an iterative job. */
  roundRow(jobId: string, round: number): Promise<RoundRow | undefined>;
  /** The API key with this hash and its user: read on every call a key signs. */
  apiKey(hash: string): Promise<ApiKeyRow | undefined>;
  /** Stops what writes (a thread, for SQLite) once what was sent is written; the next write starts it again. */
  close(): Promise<void>;
}

const stores = new WeakMap<Db, HotStore>();

/** The hot store of this client's database (one per client). */
export function hotStore(db: Db): HotStore {
  let s = stores.get(db);
  if (!s) {
    s = dbKind(db) === "postgres" ? new PgHotStore(db) : new SqliteHotStore(db);
    stores.set(db, s);
  }
  return s;
}
