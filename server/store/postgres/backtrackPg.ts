import type pg from "pg";
import { escrowAccount, userAccount } from "../../services/credits/accounts";
import type { Posting } from "../../services/credits/ledger";
import { BACKTRACK_JOB_STATE, type BacktrackOp } from "../../services/jobs/backtrackSql";
import { postTransactionPg } from "./ledgerPg";

interface Row {
  id: string; jobId: string; unitId: string; paid: number; state: string; accountId: string; volunteerId: string;
  round: number; jobState: string; ownerId: string;
}

/**
 * backtrackSql.ts on PostgreSQL (read that file for the rules): every result of the caught
 * host or account that was accepted or awaits a quorum becomes invalid, the units it helped
 * validate reopen, and its payouts are reversed, never taking an account below zero. The
 * accounts it takes from are locked first, so the balance it reads is the one it changes.
 */
export async function backtrackPg(c: pg.PoolClient, op: BacktrackOp, at: string) {
  const { rows } = await c.query<Row>(`SELECT r."id", r."jobId", r."unitId", r."paid", r."state", r."accountId", r."volunteerId",
    u."round", ${BACKTRACK_JOB_STATE} AS "jobState",
    j."ownerId" FROM "Result" r JOIN "WorkUnit" u ON u."id" = r."unitId" JOIN "Job" j ON j."id" = r."jobId"
    WHERE (r."volunteerId" = $1 OR r."accountId" = $2) AND r."state" IN ('valid', 'pending') ORDER BY r."id"`, [op.host, op.account]);
  if (!rows.length) return;
  const balances = new Map<string, number>();
  const balanceOf = async (id: string) => {
    if (!balances.has(id)) {
      const b = await c.query<{ balance: number }>(`SELECT "balance" FROM "Account" WHERE "id" = $1 FOR UPDATE`, [id]);
      balances.set(id, b.rows[0]?.balance ?? 0);
    }
    return balances.get(id)!;
  };
  const reversals = new Map<string, { to: string; postings: Posting[]; total: number }>();
  const reverse = async (jobId: string, to: string, account: string, paid: number, volunteerId: string) => {
    const amount = Math.min(paid, Math.max(0, await balanceOf(account)));
    if (amount <= 0) return;
    balances.set(account, (await balanceOf(account)) - amount);
    const r = reversals.get(jobId) ?? reversals.set(jobId, { to, postings: [], total: 0 }).get(jobId)!;
    r.postings.push({ accountId: account, amount: -amount });
    r.total += amount;
    await c.query(`UPDATE "Volunteer" SET "earned" = greatest(0, "earned" - $1) WHERE "id" = $2`, [amount, volunteerId]);
  };
  await c.query(`UPDATE "Result" SET "state" = 'invalid', "paid" = 0, "error" = $1, "decidedAt" = $2 WHERE "id" = ANY($3::text[])`,
    [`backtracked: ${op.reason}`.slice(0, 500), at, rows.map((r) => r.id)]);
  const reopen = new Map<string, Set<string>>();
  for (const r of rows) {
    if (r.state !== "valid") continue;
    if (r.round === 0 && (r.jobState === "running" || r.jobState === "completed")) {
      (reopen.get(r.jobId) ?? reopen.set(r.jobId, new Set()).get(r.jobId)!).add(r.unitId);
      await reverse(r.jobId, escrowAccount(r.jobId), r.accountId, r.paid, r.volunteerId);
    } else {
      await reverse(r.jobId, userAccount(r.ownerId), r.accountId, r.paid, r.volunteerId);
    }
  }
  for (const [jobId, units] of reopen) {
    const ids = [...units];
    // The caught host's partners on those units: their results wait for a quorum again, unpaid.
    const { rows: partners } = await c.query<{ id: string; accountId: string; volunteerId: string; paid: number }>(
      `SELECT "id", "accountId", "volunteerId", "paid" FROM "Result" WHERE "unitId" = ANY($1::text[]) AND "state" = 'valid' ORDER BY "id"`, [ids]);
    for (const p of partners) {
      await reverse(jobId, escrowAccount(jobId), p.accountId, p.paid, p.volunteerId);
      await c.query(`UPDATE "Result" SET "state" = 'pending', "paid" = 0, "decidedAt" = NULL WHERE "id" = $1`, [p.id]);
    }
    const { rowCount: reopened } = await c.query(`UPDATE "WorkUnit" SET "done" = false, "output" = NULL, "volunteerId" = NULL, "completedAt" = NULL
      WHERE "id" = ANY($1::text[]) AND "done"`, [ids]);
    await c.query(`UPDATE "Job" SET "unitsDone" = greatest(0, "unitsDone" - $1), "state" = 'running', "result" = NULL, "resultBlob" = NULL,
      "outputBytes" = CASE WHEN "programHash" IS NULL THEN "outputBytes" ELSE -1 END,
      "finishedAt" = NULL, "error" = NULL WHERE "id" = $2`, [reopened ?? 0, jobId]);
  }
  for (const [jobId, r] of reversals) {
    await postTransactionPg(c, "reversal", [...r.postings, { accountId: r.to, amount: r.total }], { jobId, memo: `backtracked: ${op.reason}`.slice(0, 500) }, at);
    await c.query(`UPDATE "Job" SET "cost" = greatest(0, "cost" - $1) WHERE "id" = $2`, [r.total, jobId]);
  }
}
