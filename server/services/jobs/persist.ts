import type { Db } from "../../store/prisma";
import { postTransaction, balanceOf, type Tx } from "../credits/ledger";
import { escrowAccount, userAccount } from "../credits/accounts";

export interface ResultRef {
  taskId: string;
  host: string;
  account: string;
  /** Millicredits paid for this result (0 for a valid result beyond the quorum). */
  pay: number;
}

export interface ReliabilityRow {
  /** "host:<volunteerId>" or a ledger account id. */
  id: string;
  consecutiveValid: number;
  consecutiveInvalid: number;
  valid: number;
  invalid: number;
  errors: number;
  turnaroundMsTotal: number;
  turnaroundCount: number;
  bannedUntil: Date | null;
  banReason: string | null;
}

export type PersistOp =
  /** A returned result, before it is validated: committed before the volunteer's ack. */
  | { type: "result"; taskId: string; jobId: string; unitId: string; host: string; account: string; output: unknown; digest: string; turnaroundMs: number; cpuMs?: number; workMs?: number }
  | { type: "error"; taskId: string; jobId: string; unitId: string; host: string; account: string; error: string }
  /** A unit reached quorum: its valid results are paid out of the job's escrow. */
  | { type: "validated"; jobId: string; unitId: string; canonical: unknown; valid: ResultRef[]; invalid: ResultRef[] }
  | { type: "reliability"; rows: ReliabilityRow[] }
  /** A job ended; a completed one carries its merged result (computed before the commit). */
  | { type: "finish"; jobId: string; state: "completed" | "failed" | "cancelled"; error?: string; result?: string | null; resultBlob?: string | null };

/**
 * Writes one group-commit batch in a single transaction, in order: received results,
 * validations with their payouts out of each job's escrow, reliability records and job
 * endings (reduce, refund of the unused escrow). Every step is guarded by the state it
 * changes (a unit already done, a result already decided), so replaying a batch after a
 * crash never pays twice.
 */
export async function persistBatch(db: Db, ops: PersistOp[]): Promise<void> {
  await db.$transaction(async (tx) => {
    const now = new Date();
    const payouts = new Map<string, Array<{ accountId: string; amount: number }>>();
    const volunteers = new Map<string, { tasks: number; earned: number }>();
    const jobCounts = new Map<string, { units: number; cost: number }>();
    const reliability = new Map<string, ReliabilityRow>();
    const finished: Array<Extract<PersistOp, { type: "finish" }>> = [];

    for (const op of ops) {
      switch (op.type) {
        case "result":
        case "error": {
          const exists = await tx.result.findUnique({ where: { id: op.taskId }, select: { id: true } });
          if (exists) break;
          await tx.result.create({
            data: {
              id: op.taskId, jobId: op.jobId, unitId: op.unitId, volunteerId: op.host, accountId: op.account,
              ...(op.type === "result"
                ? { output: JSON.stringify(op.output), digest: op.digest, state: "pending", turnaroundMs: Math.round(op.turnaroundMs), cpuMs: op.cpuMs === undefined ? null : Math.round(op.cpuMs), workMs: op.workMs ?? null }
                : { error: op.error, state: "error", decidedAt: now }),
            },
            select: { id: true },
          });
          break;
        }
        case "validated": {
          const { count } = await tx.workUnit.updateMany({
            where: { id: op.unitId, done: false },
            data: { done: true, output: JSON.stringify(op.canonical), volunteerId: op.valid[0]?.host, completedAt: now },
          });
          if (count === 0) break;
          for (const r of op.valid) {
            await tx.result.updateMany({ where: { id: r.taskId }, data: { state: "valid", paid: r.pay, decidedAt: now } });
          }
          if (op.invalid.length) {
            await tx.result.updateMany({ where: { id: { in: op.invalid.map((r) => r.taskId) } }, data: { state: "invalid", decidedAt: now } });
          }
          const list = payouts.get(op.jobId) ?? [];
          let cost = 0;
          for (const r of op.valid) {
            list.push({ accountId: r.account, amount: r.pay });
            const v = volunteers.get(r.host) ?? { tasks: 0, earned: 0 };
            v.tasks++;
            v.earned += r.pay;
            volunteers.set(r.host, v);
            cost += r.pay;
          }
          payouts.set(op.jobId, list);
          const j = jobCounts.get(op.jobId) ?? { units: 0, cost: 0 };
          j.units++;
          j.cost += cost;
          jobCounts.set(op.jobId, j);
          break;
        }
        case "reliability":
          for (const row of op.rows) reliability.set(row.id, row);
          break;
        case "finish":
          finished.push(op);
          break;
      }
    }
    for (const [jobId, list] of payouts) {
      const total = list.reduce((s, p) => s + p.amount, 0);
      if (total > 0) await postTransaction(tx, "payout", [{ accountId: escrowAccount(jobId), amount: -total }, ...list], { jobId });
    }
    for (const [id, v] of volunteers) {
      await tx.volunteer.updateMany({ where: { id }, data: { tasksDone: { increment: v.tasks }, earned: { increment: v.earned } } });
    }
    for (const [id, j] of jobCounts) {
      await tx.job.update({ where: { id }, data: { unitsDone: { increment: j.units }, cost: { increment: j.cost } }, select: { id: true } });
    }
    for (const row of reliability.values()) {
      await tx.reliability.upsert({ where: { id: row.id }, create: row, update: row, select: { id: true } });
    }
    for (const end of finished) await finishJob(tx, end.jobId, end);
  }, { timeout: 60_000 });
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
