import type { Posting } from "../credits/ledger";
import type { PersistOp } from "./batchSql";

type Validated = Extract<PersistOp, { type: "validated" }>;

/** What deciding a batch's units moves: the same on either engine (batchSql.ts, store/postgres/batchPg.ts). */
export interface SettlementPlan {
  /** Each decided result's verdict and what it is paid. */
  verdicts: Array<{ taskId: string; state: "valid" | "invalid"; paid: number }>;
  /** Payouts out of each job's escrow, by job. */
  payouts: Map<string, Posting[]>;
  volunteers: Map<string, { tasks: number; earned: number }>;
  jobs: Map<string, { units: number; cost: number }>;
}

/**
 * Pays the valid results of the units just marked done (`done`: those of `validated` that
 * were not done yet; a unit decided twice is paid once), never more than what each job's
 * escrow still holds (`escrowOf`; after a backtrack whose reversal fell short, the last units
 * of a job may be paid less).
 */
export function planSettlement(validated: Validated[], done: Set<string>, escrowOf: (jobId: string) => number): SettlementPlan {
  const plan: SettlementPlan = { verdicts: [], payouts: new Map(), volunteers: new Map(), jobs: new Map() };
  const left = new Map<string, number>();
  const escrowLeft = (jobId: string) => left.get(jobId) ?? left.set(jobId, escrowOf(jobId)).get(jobId)!;
  const pending = new Set(done);
  for (const op of validated) {
    if (!pending.delete(op.unitId)) continue;
    const list = plan.payouts.get(op.jobId) ?? plan.payouts.set(op.jobId, []).get(op.jobId)!;
    let cost = 0;
    for (const r of op.valid) {
      const pay = Math.min(r.pay, escrowLeft(op.jobId));
      left.set(op.jobId, escrowLeft(op.jobId) - pay);
      plan.verdicts.push({ taskId: r.taskId, state: "valid", paid: pay });
      list.push({ accountId: r.account, amount: pay });
      const v = plan.volunteers.get(r.host) ?? plan.volunteers.set(r.host, { tasks: 0, earned: 0 }).get(r.host)!;
      v.tasks++;
      v.earned += pay;
      cost += pay;
    }
    for (const r of op.invalid) plan.verdicts.push({ taskId: r.taskId, state: "invalid", paid: 0 });
    const j = plan.jobs.get(op.jobId) ?? plan.jobs.set(op.jobId, { units: 0, cost: 0 }).get(op.jobId)!;
    j.units++;
    j.cost += cost;
  }
  return plan;
}
