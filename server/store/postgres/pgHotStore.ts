import type { PersistOp, ReliabilityRow } from "../../services/jobs/batchSql";
import type { HotStore } from "../hotStore";
import { pgPool, type Db } from "../prisma";
import { inTransaction } from "./pool";
import { writeBatchPg } from "./batchPg";

/**
 * PostgreSQL: each batch is one transaction on a pooled connection, with multi-row statements
 * over arrays (`unnest`) so a thousand results cost a handful of round trips. Several writers
 * (coordinators) may commit at once; batchPg.ts says how each step stays right under that.
 */
export class PgHotStore implements HotStore {
  readonly kind = "postgres" as const;

  constructor(private readonly db: Db) {}

  async ready() {
    await pgPool(this.db).query("SELECT 1");
  }

  async write(ops: PersistOp[]): Promise<void> {
    if (!ops.length) return;
    await inTransaction(pgPool(this.db), (client) => writeBatchPg(client, ops));
  }

  async unitOutputs(jobId: string) {
    const { rows } = await pgPool(this.db).query<{ output: string | null; done: boolean }>(
      `SELECT "output", "done" FROM "WorkUnit" WHERE "jobId" = $1 ORDER BY "idx"`, [jobId]);
    return rows;
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

  async close() {}
}
