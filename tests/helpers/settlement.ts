import { expect } from "vitest";
import { balanceOf } from "../../server/services/credits/ledger";
import { escrowAccount } from "../../server/services/credits/accounts";
import type { Db } from "../../server/store/prisma";

/**
 * Checks how a finished job's work was validated and paid, from the database alone:
 * - no unit had two results (errors aside) from one host or one account;
 * - a unit's valid results all carry the same answer, and that answer is its output;
 * - only valid results are paid, each at most once and at its unit's pay, at most `quorum`
 *   of them per unit (exactly `quorum` with `exactQuorum`: no adaptive replication);
 * - the job's cost is the sum over units of pay × paid results, which is exactly what the
 *   payout entries moved out of escrow, account by account;
 * - the escrow is empty.
 */
export async function expectSettledJob(db: Db, jobId: string, opts: { exactQuorum?: boolean } = {}) {
  const job = await db.job.findUniqueOrThrow({ where: { id: jobId } });
  expect(job.state, `job ${jobId} should have ended`).not.toBe("running");
  const units = await db.workUnit.findMany({ where: { jobId }, select: { id: true, idx: true, pay: true, done: true, output: true }, orderBy: { idx: "asc" } });
  const results = await db.result.findMany({
    where: { jobId },
    select: { id: true, unitId: true, volunteerId: true, accountId: true, state: true, paid: true, output: true, digest: true, receivedAt: true },
  });
  let cost = 0;
  const paidByAccount = new Map<string, number>();
  for (const u of units) {
    const rows = results.filter((r) => r.unitId === u.id);
    // Kernel errors are not results: the scheduler's distinctness rule is about answers.
    const answers = rows.filter((r) => r.state !== "error");
    // The rows in the message: a rare failure of this in CI is diagnosed from them.
    const shown = () => JSON.stringify(answers.map((r) => [r.volunteerId, r.state, r.paid, r.receivedAt]));
    expect(new Set(answers.map((r) => r.volunteerId)).size, `unit ${u.idx}: one host twice: ${shown()}`).toBe(answers.length);
    expect(new Set(answers.map((r) => r.accountId)).size, `unit ${u.idx}: one account twice`).toBe(answers.length);
    for (const r of rows) if (r.state !== "valid") expect(r.paid, `unpaid ${r.state} result ${r.id}`).toBe(0);
    const valid = rows.filter((r) => r.state === "valid");
    if (!u.done) {
      expect(valid, `unit ${u.idx} is not done but has valid results`).toEqual([]);
      continue;
    }
    expect(valid.length, `unit ${u.idx} is done without a valid result`).toBeGreaterThan(0);
    expect(new Set(valid.map((r) => r.digest)).size, `unit ${u.idx}: valid results disagree`).toBe(1);
    expect(JSON.parse(valid[0].output!)).toEqual(JSON.parse(u.output!));
    const paid = valid.filter((r) => r.paid > 0);
    for (const r of paid) expect(r.paid, `result ${r.id} paid other than its unit's pay`).toBe(u.pay);
    if (opts.exactQuorum) expect(paid.length, `unit ${u.idx}: paid results`).toBe(job.quorum);
    else expect(paid.length).toBeLessThanOrEqual(job.quorum);
    cost += u.pay * paid.length;
    for (const r of paid) paidByAccount.set(r.accountId, (paidByAccount.get(r.accountId) ?? 0) + r.paid);
  }
  expect(job.cost).toBe(cost);

  const payouts = await db.ledgerEntry.groupBy({ by: ["accountId"], where: { jobId, kind: "payout", amount: { gt: 0 } }, _sum: { amount: true } });
  expect(new Map(payouts.map((p) => [p.accountId, p._sum.amount]))).toEqual(paidByAccount);
  const fromEscrow = await db.ledgerEntry.aggregate({ where: { jobId, kind: "payout", accountId: escrowAccount(jobId) }, _sum: { amount: true } });
  expect(-(fromEscrow._sum.amount ?? 0) || 0).toBe(cost);
  expect(await balanceOf(db, escrowAccount(jobId))).toBe(0);
  return { job, units, results, paidByAccount };
}
