import type { Database as Conn } from "better-sqlite3";
import { escrowAccount, userAccount } from "../credits/accounts";
import { postTransactionSync, type Posting } from "../credits/ledger";
import type { SqliteGate } from "../../store/sqliteGate";

// Backtracking (Sarmenta): once a host is caught returning wrong results, nothing it ever
// returned is believed. Run by the writer thread inside the group commit's transaction, so it
// is ordered with the results, verdicts and job endings around it and happens whole or not at all.

export interface BacktrackOp {
  type: "backtrack";
  host: string;
  account: string;
  reason: string;
}

interface Row {
  id: string; jobId: string; unitId: string; paid: number; state: string; accountId: string; volunteerId: string;
  round: number; jobState: string; ownerId: string;
}

/**
 * Every result of the caught host or account that was accepted or awaits a quorum becomes
 * invalid. Units of one-shot jobs (running or completed) that it helped validate are reopened:
 * their other accepted results wait for a quorum again, a completed job runs again, and every
 * payout for those units is reversed into the job's escrow, out of which the units are paid
 * once more when they validate again. Elsewhere (iterative jobs' rounds, jobs that failed or
 * were cancelled, completed program jobs whose stored inputs were collected a day after
 * their end, files.ts, and deleted jobs, which could not run again) the caught host's payouts
 * go back to the job's owner. A reversal never takes
 * an account below zero: what was already spent is not clawed back.
 */
/** A caught host's job as the backtrack sees it (SQL over the job `j`, both engines): deleted, or completed with its inputs collected, it is 'collected' and cannot run again. */
export const BACKTRACK_JOB_STATE = `CASE WHEN j."deletedAt" IS NOT NULL OR (j."state" = 'completed' AND j."programHash" IS NOT NULL AND j."inputBytes" = 0) THEN 'collected' ELSE j."state" END`;

export function backtrackSql(gate: SqliteGate, conn: Conn, op: BacktrackOp, at: string) {
  const rows = gate.statement(conn, `SELECT r."id", r."jobId", r."unitId", r."paid", r."state", r."accountId", r."volunteerId",
    u."round", ${BACKTRACK_JOB_STATE} AS "jobState",
    j."ownerId" FROM "Result" r JOIN "WorkUnit" u ON u."id" = r."unitId" JOIN "Job" j ON j."id" = r."jobId"
    WHERE (r."volunteerId" = ? OR r."accountId" = ?) AND r."state" IN ('valid', 'pending') ORDER BY r."id"`).all(op.host, op.account) as Row[];
  if (!rows.length) return;
  const invalidate = gate.statement(conn, `UPDATE "Result" SET "state" = 'invalid', "paid" = 0, "error" = ?, "decidedAt" = ? WHERE "id" = ?`);
  const balances = new Map<string, number>();
  const balanceOf = (id: string) => {
    if (!balances.has(id)) {
      const b = gate.statement(conn, `SELECT "balance" FROM "Account" WHERE "id" = ?`).get(id) as { balance: number } | undefined;
      balances.set(id, b?.balance ?? 0);
    }
    return balances.get(id)!;
  };
  /** Takes back up to `paid` from `account`; returns what it could. */
  const takeBack = (account: string, paid: number) => {
    const amount = Math.min(paid, Math.max(0, balanceOf(account)));
    balances.set(account, balanceOf(account) - amount);
    return amount;
  };
  const reversals = new Map<string, { to: string; postings: Posting[]; total: number }>();
  const reverse = (jobId: string, to: string, account: string, paid: number, volunteerId: string) => {
    const amount = takeBack(account, paid);
    if (amount <= 0) return;
    const r = reversals.get(jobId) ?? reversals.set(jobId, { to, postings: [], total: 0 }).get(jobId)!;
    r.postings.push({ accountId: account, amount: -amount });
    r.total += amount;
    gate.statement(conn, `UPDATE "Volunteer" SET "earned" = max(0, "earned" - ?) WHERE "id" = ?`).run(amount, volunteerId);
  };
  const reopen = new Map<string, Set<string>>();
  for (const r of rows) {
    invalidate.run(`backtracked: ${op.reason}`.slice(0, 500), at, r.id);
    if (r.state !== "valid") continue;
    if (r.round === 0 && (r.jobState === "running" || r.jobState === "completed")) {
      (reopen.get(r.jobId) ?? reopen.set(r.jobId, new Set()).get(r.jobId)!).add(r.unitId);
      reverse(r.jobId, escrowAccount(r.jobId), r.accountId, r.paid, r.volunteerId);
    } else {
      reverse(r.jobId, userAccount(r.ownerId), r.accountId, r.paid, r.volunteerId);
    }
  }
  for (const [jobId, units] of reopen) {
    const ids = JSON.stringify([...units]);
    // The caught host's partners on those units: their results wait for a quorum again, unpaid.
    const partners = gate.statement(conn, `SELECT "id", "accountId", "volunteerId", "paid" FROM "Result"
      WHERE "unitId" IN (SELECT "value" FROM json_each(?)) AND "state" = 'valid'`).all(ids) as Array<{ id: string; accountId: string; volunteerId: string; paid: number }>;
    for (const p of partners) {
      reverse(jobId, escrowAccount(jobId), p.accountId, p.paid, p.volunteerId);
      gate.statement(conn, `UPDATE "Result" SET "state" = 'pending', "paid" = 0, "decidedAt" = NULL WHERE "id" = ?`).run(p.id);
    }
    const reopened = gate.statement(conn, `UPDATE "WorkUnit" SET "done" = 0, "output" = NULL, "volunteerId" = NULL, "completedAt" = NULL
      WHERE "id" IN (SELECT "value" FROM json_each(?)) AND "done" = 1`).run(ids).changes;
    gate.statement(conn, `UPDATE "Job" SET "unitsDone" = max(0, "unitsDone" - ?), "state" = 'running', "result" = NULL, "resultBlob" = NULL,
      "outputBytes" = CASE WHEN "programHash" IS NULL THEN "outputBytes" ELSE -1 END,
      "finishedAt" = NULL, "error" = NULL WHERE "id" = ?`).run(reopened, jobId);
  }
  for (const [jobId, r] of reversals) {
    postTransactionSync(gate, conn, "reversal", [...r.postings, { accountId: r.to, amount: r.total }], { jobId, memo: `backtracked: ${op.reason}`.slice(0, 500) });
    gate.statement(conn, `UPDATE "Job" SET "cost" = max(0, "cost" - ?) WHERE "id" = ?`).run(r.total, jobId);
  }
}
