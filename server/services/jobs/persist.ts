import type { Database as Conn } from "better-sqlite3";
import { sqliteGate, type Db } from "../../store/prisma";
import { sqlTime, type SqliteGate } from "../../store/sqliteGate";
import { postTransaction, postTransactionSync, balanceOf, type Posting, type Tx } from "../credits/ledger";
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
 * validations with their payouts out of each job's escrow, and reliability records; then
 * job endings (reduce, refund of the unused escrow), each in a transaction of its own.
 * Every step is guarded by the state it changes (a result already stored, a unit already
 * done, a job no longer running), so replaying a batch after a crash never pays twice.
 * The batch itself is a few multi-row statements run synchronously on the database
 * connection (see store/sqliteGate.ts): thousands of results cost milliseconds.
 */
export async function persistBatch(db: Db, ops: PersistOp[]): Promise<void> {
  const gate = await sqliteGate(db);
  const finished: Array<Extract<PersistOp, { type: "finish" }>> = [];
  const rest: PersistOp[] = [];
  for (const op of ops) (op.type === "finish" ? finished : rest).push(op);
  if (rest.length) await gate.write((conn) => writeBatch(gate, conn, rest));
  for (const end of finished) await db.$transaction((tx) => finishJob(tx, end.jobId, end), { timeout: 60_000 });
}

function writeBatch(gate: SqliteGate, conn: Conn, ops: PersistOp[]) {
  const at = sqlTime(new Date());
  const results: unknown[][] = [];
  const validated: Array<Extract<PersistOp, { type: "validated" }>> = [];
  const reliability = new Map<string, ReliabilityRow>();
  for (const op of ops) {
    switch (op.type) {
      case "result":
        results.push([
          op.taskId, op.jobId, op.unitId, op.host, op.account, JSON.stringify(op.output), op.digest, null, "pending",
          Math.round(op.turnaroundMs), op.cpuMs === undefined ? null : Math.round(op.cpuMs), op.workMs ?? null, at, null,
        ]);
        break;
      case "error":
        results.push([op.taskId, op.jobId, op.unitId, op.host, op.account, null, null, op.error, "error", 0, null, null, at, at]);
        break;
      case "validated":
        validated.push(op);
        break;
      case "reliability":
        for (const row of op.rows) reliability.set(row.id, row);
        break;
    }
  }
  if (results.length) {
    gate.bulk(conn, `INSERT INTO "Result" ("id", "jobId", "unitId", "volunteerId", "accountId", "output", "digest", "error", "state",
      "turnaroundMs", "cpuMs", "workMs", "receivedAt", "decidedAt") VALUES {values} ON CONFLICT ("id") DO NOTHING`, results);
  }
  if (validated.length) settle(gate, conn, validated, at);
  if (reliability.size) {
    gate.bulk(conn, `INSERT INTO "Reliability" ("id", "consecutiveValid", "consecutiveInvalid", "valid", "invalid", "errors",
      "turnaroundMsTotal", "turnaroundCount", "bannedUntil", "banReason", "updatedAt") VALUES {values} ON CONFLICT ("id") DO UPDATE SET
      "consecutiveValid" = excluded."consecutiveValid", "consecutiveInvalid" = excluded."consecutiveInvalid", "valid" = excluded."valid",
      "invalid" = excluded."invalid", "errors" = excluded."errors", "turnaroundMsTotal" = excluded."turnaroundMsTotal",
      "turnaroundCount" = excluded."turnaroundCount", "bannedUntil" = excluded."bannedUntil", "banReason" = excluded."banReason",
      "updatedAt" = excluded."updatedAt"`, [...reliability.values()].map((r) => [
      r.id, r.consecutiveValid, r.consecutiveInvalid, r.valid, r.invalid, r.errors, r.turnaroundMsTotal, r.turnaroundCount,
      r.bannedUntil ? sqlTime(r.bannedUntil) : null, r.banReason, at,
    ]));
  }
}

/** Marks units done (only those not done yet), settles their results and pays the valid ones. */
function settle(gate: SqliteGate, conn: Conn, validated: Array<Extract<PersistOp, { type: "validated" }>>, at: string) {
  const fresh = gate.bulk<{ id: string }>(conn, `UPDATE "WorkUnit" SET "done" = 1, "output" = v.column2, "volunteerId" = v.column3,
    "completedAt" = v.column4 FROM (VALUES {values}) AS v WHERE "WorkUnit"."id" = v.column1 AND "WorkUnit"."done" = 0
    RETURNING "WorkUnit"."id" AS id`, validated.map((op) => [op.unitId, JSON.stringify(op.canonical), op.valid[0]?.host ?? null, at]));
  const done = new Set(fresh.map((r) => r.id));
  const verdicts: unknown[][] = [];
  const payouts = new Map<string, Posting[]>();
  const volunteers = new Map<string, { tasks: number; earned: number }>();
  const jobCounts = new Map<string, { units: number; cost: number }>();
  for (const op of validated) {
    if (!done.delete(op.unitId)) continue;
    const list = payouts.get(op.jobId) ?? payouts.set(op.jobId, []).get(op.jobId)!;
    let cost = 0;
    for (const r of op.valid) {
      verdicts.push([r.taskId, "valid", r.pay, at]);
      list.push({ accountId: r.account, amount: r.pay });
      const v = volunteers.get(r.host) ?? volunteers.set(r.host, { tasks: 0, earned: 0 }).get(r.host)!;
      v.tasks++;
      v.earned += r.pay;
      cost += r.pay;
    }
    for (const r of op.invalid) verdicts.push([r.taskId, "invalid", 0, at]);
    const j = jobCounts.get(op.jobId) ?? jobCounts.set(op.jobId, { units: 0, cost: 0 }).get(op.jobId)!;
    j.units++;
    j.cost += cost;
  }
  if (verdicts.length) {
    gate.bulk(conn, `UPDATE "Result" SET "state" = v.column2, "paid" = v.column3, "decidedAt" = v.column4
      FROM (VALUES {values}) AS v WHERE "Result"."id" = v.column1`, verdicts);
  }
  for (const [jobId, list] of payouts) {
    const total = list.reduce((s, p) => s + p.amount, 0);
    if (total > 0) postTransactionSync(gate, conn, "payout", [{ accountId: escrowAccount(jobId), amount: -total }, ...list], { jobId });
  }
  if (volunteers.size) {
    gate.bulk(conn, `UPDATE "Volunteer" SET "tasksDone" = "tasksDone" + v.column2, "earned" = "earned" + v.column3
      FROM (VALUES {values}) AS v WHERE "Volunteer"."id" = v.column1`, [...volunteers].map(([id, v]) => [id, v.tasks, v.earned]));
  }
  if (jobCounts.size) {
    gate.bulk(conn, `UPDATE "Job" SET "unitsDone" = "unitsDone" + v.column2, "cost" = "cost" + v.column3
      FROM (VALUES {values}) AS v WHERE "Job"."id" = v.column1`, [...jobCounts].map(([id, j]) => [id, j.units, j.cost]));
  }
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
