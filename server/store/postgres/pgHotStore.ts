import type { PersistOp, ReliabilityRow } from "../../services/jobs/batchSql";
import type { HotStore } from "../hotStore";
import { roundRow, roundRowSql, type RoundSqlRow } from "../roundRow";
import { apiKeyRow, apiKeySql, type ApiKeySqlRow } from "../apiKeyRow";
import { pgPool, type Db } from "../prisma";
import { inTransaction } from "./pool";
import { writeBatchPg } from "./batchPg";
import { fastPathFits, writeBatchFastPg } from "./fastBatchPg";
import { OUTPUT_PAGE } from "../outputPage";

const DEADLOCK = "40P01";

type PageRow = { round: number; idx: number; output: string | null; done: boolean };
const PAGE_SQL = `SELECT "round", "idx", "output", "done" FROM "WorkUnit" WHERE "jobId" = $1`;
const PAGE_END = `ORDER BY "round", "idx" LIMIT`;

/**
 * PostgreSQL: each batch is one transaction on a pooled connection, with multi-row statements
 * over arrays (`unnest`) so a thousand results cost a handful of statements. Several writers
 * (coordinators) may commit at once: the common batch of results takes the rows they share
 * last (fastBatchPg.ts), any other batch locks its jobs and escrows first (batchPg.ts).
 */
export class PgHotStore implements HotStore {
  readonly kind = "postgres" as const;

  constructor(private readonly db: Db) {}

  async ready() {
    await pgPool(this.db).query("SELECT 1");
  }

  async write(ops: PersistOp[]): Promise<void> {
    if (!ops.length) return;
    const pool = pgPool(this.db);
    if (fastPathFits(ops) && (await writeBatchFastPg(pool, ops))) return;
    // Batches of other nodes take rows in the same order, so a deadlock is rare (a volunteer on
    // two nodes at once, a job ending as another node pays out of it); PostgreSQL then fails one
    // side, which is simply written again.
    for (let attempt = 1; ; attempt++) {
      try {
        return await inTransaction(pool, (client) => writeBatchPg(client, ops));
      } catch (e) {
        if ((e as { code?: string }).code !== DEADLOCK || attempt >= 3) throw e;
      }
    }
  }

  async unitOutputs(jobId: string) {
    const out: Array<{ output: string | null; done: boolean }> = [];
    for await (const page of this.outputPages(jobId, OUTPUT_PAGE)) for (const r of page) out.push({ output: r.output, done: r.done });
    return out;
  }

  async *outputPages(jobId: string, size: number) {
    // A page at a time, as on SQLite: the driver parses a whole result on the event loop.
    for (let after: { round: number; idx: number } | undefined; ; ) {
      const { rows } = after
        ? await pgPool(this.db).query<PageRow>(`${PAGE_SQL} AND ("round", "idx") > ($2, $3) ${PAGE_END} $4`, [jobId, after.round, after.idx, size])
        : await pgPool(this.db).query<PageRow>(`${PAGE_SQL} ${PAGE_END} $2`, [jobId, size]);
      yield rows;
      if (rows.length < size) return;
      after = rows[rows.length - 1];
    }
  }

  async outputBytes(jobId: string) {
    const { rows } = await pgPool(this.db).query<{ n: string }>(`SELECT coalesce(sum(octet_length("output")), 0) AS "n" FROM "WorkUnit" WHERE "jobId" = $1`, [jobId]);
    return Number(rows[0].n);
  }

  async volunteerTokenHash(volunteerId: string) {
    const { rows } = await pgPool(this.db).query<{ tokenHash: string }>(`SELECT "tokenHash" FROM "Volunteer" WHERE "id" = $1`, [volunteerId]);
    return rows[0]?.tokenHash;
  }

  async reliabilityRows(ids: string[]): Promise<ReliabilityRow[]> {
    const { rows } = await pgPool(this.db).query<ReliabilityRow>(`SELECT "id", "consecutiveValid", "consecutiveInvalid", "valid", "invalid", "errors",
      "turnaroundMsTotal", "turnaroundCount", "spotChecks", "bannedUntil", "banReason" FROM "Reliability" WHERE "id" = ANY($1::text[])`, [ids]);
    return rows;
  }

  async roundRow(jobId: string, round: number) {
    const { rows } = await pgPool(this.db).query<RoundSqlRow>(roundRowSql("$1", "$2"), [jobId, round]);
    return roundRow(rows[0]);
  }

  async apiKey(hash: string) {
    const { rows } = await pgPool(this.db).query<ApiKeySqlRow>(apiKeySql("$1"), [hash]);
    return apiKeyRow(rows[0]);
  }

  async close() {}
}
