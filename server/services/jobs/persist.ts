import type { Db } from "../../store/prisma";
import type { DbWriter } from "../../store/dbWriter";
import { postTransaction, balanceOf, type Tx } from "../credits/ledger";
import { escrowAccount, userAccount } from "../credits/accounts";
import type { PersistOp } from "./batchSql";

export type { PersistOp, ReliabilityRow, ResultRef } from "./batchSql";

/**
 * Writes one group-commit batch in a single transaction, in order: received results,
 * validations with their payouts out of each job's escrow, and reliability records; then
 * job endings (reduce, refund of the unused escrow), each in a transaction of its own.
 * Every step is guarded by the state it changes (a result already stored, a unit already
 * done, a job no longer running), so replaying a batch after a crash never pays twice.
 * The batch itself is a few multi-row statements (batchSql.ts) run by the database writer
 * thread: thousands of results cost milliseconds, off the event loop.
 */
export async function persistBatch(db: Db, writer: DbWriter, ops: PersistOp[]): Promise<void> {
  const finished: Array<Extract<PersistOp, { type: "finish" }>> = [];
  const rest: PersistOp[] = [];
  for (const op of ops) (op.type === "finish" ? finished : rest).push(op);
  if (rest.length) await writer.write(rest);
  for (const end of finished) await db.$transaction((tx) => finishJob(tx, end.jobId, end), { timeout: 60_000 });
}

async function finishJob(tx: Tx, jobId: string, end: Extract<PersistOp, { type: "finish" }>) {
  const job = await tx.job.findUnique({ where: { id: jobId }, select: { ownerId: true, state: true } });
  if (!job || job.state !== "running") return;
  const { state, error, result = null, resultBlob = null } = end;
  // Results still waiting for a quorum will never be paid: they are settled as unneeded.
  await tx.result.updateMany({ where: { jobId, state: "pending" }, data: { state: "unneeded", decidedAt: new Date() } });
  const left = await balanceOf(tx, escrowAccount(jobId));
  if (left > 0) {
    await postTransaction(tx, "refund", [
      { accountId: escrowAccount(jobId), amount: -left },
      { accountId: userAccount(job.ownerId), amount: left },
    ], { jobId, memo: "unused escrow returned" });
  }
  await tx.job.update({ where: { id: jobId }, data: { state, error, result, resultBlob, finishedAt: new Date() }, select: { id: true } });
}
