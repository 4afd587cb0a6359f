import type pg from "pg";
import type { PersistOp } from "../../services/jobs/batchSql";

/** The group commit's batch on PostgreSQL: see batchSql.ts for what each op means. */
export async function writeBatchPg(client: pg.PoolClient, ops: PersistOp[]): Promise<void> {
  void client;
  void ops;
  throw new Error("not written yet");
}
