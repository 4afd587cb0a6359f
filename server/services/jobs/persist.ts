import type { DbWriter } from "../../store/dbWriter";
import type { PersistOp } from "./batchSql";

export type { PersistOp, ReliabilityRow, ResultRef } from "./batchSql";

/**
 * Writes one group-commit batch in a single transaction on the database writer thread
 * (batchSql.ts): volunteers, received results, validations with their payouts out of each
 * job's escrow, reliability records and job endings with the refund of unused escrow. Every
 * step is guarded by the state it changes (a result already stored, a unit already done, a
 * job no longer running), so replaying a batch after a crash never pays twice, and thousands
 * of results cost a few multi-row statements, off the event loop.
 */
export async function persistBatch(writer: DbWriter, ops: PersistOp[]): Promise<void> {
  await writer.write(ops);
}
