import { getKernel } from "../../../worker/kernels";
import type { BlobStore } from "../../store/blobs";
import type { Db } from "../../store/prisma";
import { postTransaction, balanceOf, type Tx } from "../credits/ledger";
import { escrowAccount, userAccount } from "../credits/accounts";

export type PersistOp =
  | { type: "result"; jobId: string; unitId: string; output: unknown; volunteerId: string; accountId: string; pay: number }
  | { type: "finish"; jobId: string; state: "completed" | "failed" | "cancelled"; error?: string };

/** Results above this size go to the blob store instead of the job row. */
const INLINE_RESULT_BYTES = 64 * 1024;

/**
 * Writes one group-commit batch in a single transaction: accepted unit results, the
 * volunteers' payouts out of each job's escrow, and job endings (reduce, refund of the
 * unused escrow). A unit already marked done is skipped, so replaying a batch after a
 * crash never pays twice.
 */
export async function persistBatch(db: Db, blobs: BlobStore, ops: PersistOp[]): Promise<void> {
  // Reduce outside the transaction: it can be slow, and SQLite allows one writer at a time.
  const finished = new Map<string, { result?: string; resultBlob?: string; error?: string; state: string }>();
  for (const op of ops) {
    if (op.type === "finish") finished.set(op.jobId, { state: op.state, error: op.error });
  }

  await db.$transaction(async (tx) => {
    const payouts = new Map<string, Array<{ accountId: string; amount: number }>>();
    const volunteers = new Map<string, { tasks: number; earned: number }>();
    const jobCounts = new Map<string, { units: number; cost: number }>();
    const now = new Date();
    for (const op of ops) {
      if (op.type !== "result") continue;
      const { count } = await tx.workUnit.updateMany({
        where: { id: op.unitId, done: false },
        data: { done: true, output: JSON.stringify(op.output), volunteerId: op.volunteerId, completedAt: now },
      });
      if (count === 0) continue;
      const list = payouts.get(op.jobId) ?? [];
      list.push({ accountId: op.accountId, amount: op.pay });
      payouts.set(op.jobId, list);
      const v = volunteers.get(op.volunteerId) ?? { tasks: 0, earned: 0 };
      v.tasks++, (v.earned += op.pay);
      volunteers.set(op.volunteerId, v);
      const j = jobCounts.get(op.jobId) ?? { units: 0, cost: 0 };
      j.units++, (j.cost += op.pay);
      jobCounts.set(op.jobId, j);
    }
    for (const [jobId, list] of payouts) {
      const total = list.reduce((s, p) => s + p.amount, 0);
      await postTransaction(tx, "payout", [{ accountId: escrowAccount(jobId), amount: -total }, ...list], { jobId });
    }
    for (const [id, v] of volunteers) {
      await tx.volunteer.updateMany({ where: { id }, data: { tasksDone: { increment: v.tasks }, earned: { increment: v.earned } } });
    }
    for (const [id, j] of jobCounts) {
      await tx.job.update({ where: { id }, data: { unitsDone: { increment: j.units }, cost: { increment: j.cost } }, select: { id: true } });
    }
    for (const [jobId, end] of finished) await finishJob(tx, blobs, jobId, end);
  }, { timeout: 60_000 });
}

async function finishJob(tx: Tx, blobs: BlobStore, jobId: string, end: { state: string; error?: string }) {
  const job = await tx.job.findUnique({ where: { id: jobId }, select: { ownerId: true, kernel: true, params: true, state: true } });
  if (!job || job.state !== "running") return;
  let result: string | undefined;
  let resultBlob: string | undefined;
  let state = end.state;
  let error = end.error;
  if (state === "completed") {
    try {
      const units = await tx.workUnit.findMany({ where: { jobId }, select: { output: true, done: true }, orderBy: { idx: "asc" } });
      if (units.some((u) => !u.done)) throw new Error("job ended before every unit had a result");
      const kernel = getKernel(job.kernel)!;
      const json = JSON.stringify(kernel.reduce(JSON.parse(job.params), units.map((u) => JSON.parse(u.output!))));
      if (Buffer.byteLength(json) > INLINE_RESULT_BYTES) resultBlob = await blobs.put(json);
      else result = json;
    } catch (e) {
      state = "failed";
      error = `Could not merge the results: ${(e as Error).message}`;
    }
  }
  const left = await balanceOf(tx, escrowAccount(jobId));
  if (left > 0) {
    await postTransaction(tx, "refund", [
      { accountId: escrowAccount(jobId), amount: -left },
      { accountId: userAccount(job.ownerId), amount: left },
    ], { jobId, memo: "unused escrow returned" });
  }
  await tx.job.update({ where: { id: jobId }, data: { state, error, result, resultBlob, finishedAt: new Date() }, select: { id: true } });
}
