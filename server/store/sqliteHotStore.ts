import type { PersistOp, ReliabilityRow } from "../services/jobs/batchSql";
import { DbWriter } from "./dbWriter";
import type { HotStore } from "./hotStore";
import { roundRow, roundRowSql, type RoundSqlRow } from "./roundRow";
import { apiKeyRow, apiKeySql, type ApiKeySqlRow } from "./apiKeyRow";
import { OUTPUT_PAGE } from "./outputPage";
import { sqliteGate, type Db } from "./prisma";

type Row = { round: number; idx: number; output: string | null; done: number };
// In the unique index's order (jobId, round, idx): no sort, and each page starts where the last ended.
const PAGE_SQL = `SELECT "round", "idx", "output", "done" FROM "WorkUnit" WHERE "jobId" = ?`;
const FIRST_PAGE = `${PAGE_SQL} ORDER BY "round", "idx" LIMIT ?`;
const NEXT_PAGE = `${PAGE_SQL} AND ("round", "idx") > (?, ?) ORDER BY "round", "idx" LIMIT ?`;

/**
 * SQLite: batches are written on the database writer thread (dbWriter.ts), reads are raw and
 * synchronous on Prisma's own connection (in WAL mode they see the last commit and block no one).
 */
export class SqliteHotStore implements HotStore {
  readonly kind = "sqlite" as const;
  private writer: DbWriter | undefined;

  constructor(private readonly db: Db) {}

  private async thread(): Promise<DbWriter> {
    const gate = await sqliteGate(this.db);
    return (this.writer ??= new DbWriter(gate.file, gate.writeLock));
  }

  async ready() {
    await (await this.thread()).ready();
  }

  async write(ops: PersistOp[]): Promise<void> {
    await (await this.thread()).write(ops);
  }

  /** The writer thread's value of a connection setting (tests check durability settings). */
  async setting(name: string): Promise<unknown> {
    return (await this.thread()).setting(name);
  }

  async unitOutputs(jobId: string) {
    const out: Array<{ output: string | null; done: boolean }> = [];
    for await (const page of this.outputPages(jobId, OUTPUT_PAGE)) for (const r of page) out.push({ output: r.output, done: r.done });
    return out;
  }

  async *outputPages(jobId: string, size: number) {
    const gate = await sqliteGate(this.db);
    // A page at a time, the event loop free in between: all 10,000 outputs of a job in one
    // read held it 15–35 ms, and a burst of jobs ending together for hundreds.
    for (let after: Row | undefined; ; ) {
      const rows = gate.read((conn) => gate.statement(conn, after ? NEXT_PAGE : FIRST_PAGE).all(...(after ? [jobId, after.round, after.idx, size] : [jobId, size]))) as Row[];
      yield rows.map((r) => ({ round: r.round, idx: r.idx, output: r.output, done: !!r.done }));
      if (rows.length < size) return;
      after = rows[rows.length - 1];
      await new Promise(setImmediate);
    }
  }

  async outputBytes(jobId: string) {
    const gate = await sqliteGate(this.db);
    // octet_length reads a value's size from its record header, not the value (300 outputs of 4 MB: 0.2 ms).
    const row = gate.read((conn) => gate.statement(conn, `SELECT coalesce(sum(octet_length("output")), 0) AS "n" FROM "WorkUnit" WHERE "jobId" = ?`).get(jobId)) as { n: number };
    return Number(row.n);
  }

  async volunteerTokenHash(volunteerId: string) {
    const gate = await sqliteGate(this.db);
    const row = gate.read((conn) => gate.statement(conn, `SELECT "tokenHash" FROM "Volunteer" WHERE "id" = ?`).get(volunteerId)) as { tokenHash: string } | undefined;
    return row?.tokenHash;
  }

  async reliabilityRows(ids: string[]): Promise<ReliabilityRow[]> {
    const gate = await sqliteGate(this.db);
    // The ids as one JSON parameter: one cached statement whatever their number.
    const rows = gate.read((conn) => gate.statement(conn, `SELECT "id", "consecutiveValid", "consecutiveInvalid", "valid", "invalid", "errors",
      "turnaroundMsTotal", "turnaroundCount", "spotChecks", "bannedUntil", "banReason" FROM "Reliability" WHERE "id" IN (SELECT "value" FROM json_each(?))`)
      .all(JSON.stringify(ids))) as Array<Omit<ReliabilityRow, "bannedUntil"> & { bannedUntil: string | null }>;
    return rows.map((r) => ({ ...r, bannedUntil: r.bannedUntil ? new Date(r.bannedUntil) : null }));
  }

  async roundRow(jobId: string, round: number) {
    const gate = await sqliteGate(this.db);
    return roundRow(gate.read((conn) => gate.statement(conn, roundRowSql("?", "?")).get(jobId, round)) as RoundSqlRow | undefined);
  }

  async apiKey(hash: string) {
    const gate = await sqliteGate(this.db);
    return apiKeyRow(gate.read((conn) => gate.statement(conn, apiKeySql("?")).get(hash)) as ApiKeySqlRow | undefined);
  }

  async close() {
    const w = this.writer;
    this.writer = undefined;
    await w?.close();
  }
}
