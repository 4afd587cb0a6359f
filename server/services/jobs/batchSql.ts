import type { Database as Conn } from "better-sqlite3";
import { escrowAccount, userAccount } from "../credits/accounts";
import { postTransactionSync } from "../credits/ledger";
import { sqlTime, type SqliteGate } from "../../store/sqliteGate";
import { backtrackSql, type BacktrackOp } from "./backtrackSql";
import { planSettlement } from "./settlement";
import { INPUTS_HELD_SQL, InputBudgetExceeded } from "../programs/inputBudget";

// The group commit's SQL, run by the database writer thread (store/dbWriterThread.ts) in one
// transaction per batch: volunteers, received results, validations with their payouts out of
// each job's escrow, reliability records, job endings with the refund of unused escrow, and
// new jobs. Every step is guarded by the state it changes (a result already stored, a unit
// already done, a job no longer running), so replaying a batch after a crash never pays twice.
// Plain synchronous statements on a better-sqlite3 connection, with no Prisma at run time.

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
  /** Spot-checks passed: the host's verified record (its credibility). */
  spotChecks: number;
  bannedUntil: Date | null;
  banReason: string | null;
}

/** The counters of a reliability row, which only ever grow. */
export type ReliabilityCounters = Pick<ReliabilityRow, "valid" | "invalid" | "errors" | "turnaroundMsTotal" | "turnaroundCount" | "spotChecks">;

/**
 * A reliability row to write: streaks as they are now, counters as increments (`add`), so
 * that writers counting the same host at once never overwrite each other's counts. A ban
 * only ever extends (lifting one is an admin's write of its own).
 */
export type ReliabilityWrite = Pick<ReliabilityRow, "id" | "consecutiveValid" | "consecutiveInvalid" | "bannedUntil" | "banReason"> & { add: ReliabilityCounters };

/**
 * Cluster mode: the slice (server/cluster/slices.ts) a result or verdict belongs to, as the node
 * held it. It is written only while the slice's row still names that node and epoch: a node
 * that stalled past its lease cannot write into a slice another node has claimed and rebuilt
 * from the durable rows (fencePg.ts).
 */
export interface SliceFence {
  id: string;
  epoch: number;
  node: string;
}

export type PersistOp =
  /** A returned result, before it is validated: committed before the volunteer's ack. */
  | { type: "result"; taskId: string; jobId: string; unitId: string; host: string; account: string; outputJson: string; digest: string; turnaroundMs: number; cpuMs?: number; workMs?: number; slice?: SliceFence }
  | { type: "error"; taskId: string; jobId: string; unitId: string; host: string; account: string; error: string; slice?: SliceFence }
  /** A unit reached quorum: its valid results are paid out of the job's escrow. */
  | { type: "validated"; jobId: string; unitId: string; canonicalJson: string; valid: ResultRef[]; invalid: ResultRef[]; slice?: SliceFence }
  | { type: "reliability"; rows: ReliabilityWrite[] }
  /** A new job, written alone (its escrow hold may fail for want of credits): see submitJob. */
  | {
      type: "submit"; job: JobRow; units: Array<[id: string, idx: number, input: string, work: number, pay: number]>; round: number; roundState: string | null; ownerAccount: string; escrow: string; estimate: number;
      /** The owner's input budget (bytes): the job is refused (InputBudgetExceeded) unless its inputs fit, checked in the insert's transaction. */
      inputQuota?: number;
    }
  /** A volunteer connected: its row is created on first sight and refreshed after (at: ISO time). */
  | { type: "volunteer"; id: string; tokenHash: string; userId: string | null; name: string | null; nameChosen?: boolean; benchmark: number | null; at: string }
  /** A job ended; a completed one carries its merged result (computed before the commit). */
  | {
      type: "finish"; jobId: string; state: "completed" | "failed" | "cancelled"; error?: string; result?: string | null; resultBlob?: string | null;
      /**
       * Set by the PostgreSQL store as it commits: false when the job had already ended (in a
       * cluster another node, or a second cancel, may end it first), so that only the node
       * whose op ended it counts and logs the end. A single node never finishes a job twice.
       */
      ended?: boolean;
    }
  | BacktrackOp
  | RoundOp;

/**
 * What a stepped round's row keeps of the state it started from: nothing (the next round's row
 * holds the state it made, the final round's `next` the whole step). Each round kept its 16 MiB
 * state, and the step again in `next`: 33 MB a round, 3 GB in a minute, never freed.
 */
export const SPENT_STATE_JSON = "null";
/** The same, as an SQL literal. */
export const SPENT_STATE = `'${SPENT_STATE_JSON}'`;
/**
 * A stepped round's units' inputs go too (the next round's units have their own): each carried
 * the round's broadcast, up to 16 MiB a round, kept for every round of a job, counted nowhere.
 * Nothing reads them again: a round's audits and shard locality read its units from memory, and
 * a restart reads the current round's. Its outputs stay (units.json lists every round's).
 */
export const spentInputsSql = (jobId: string, round: string) => `UPDATE "WorkUnit" SET "input" = ${SPENT_STATE} WHERE "jobId" = ${jobId} AND "round" = ${round}`;

/** A round of an iterative program stepped (rounds.ts, stepRoundInMemory): what storeStep writes, as one op, before anything else in its batch. */
export interface RoundOp {
  type: "round";
  jobId: string;
  round: number;
  /** ISO time the round ended (and the next started). */
  finishedAt: string;
  latencyMs: number;
  done: boolean;
  /** JSON: the whole checked step. */
  next: string | null;
  metric: number | null;
  stats: string | null;
  /** JSON: the state the next round starts from. */
  state: string;
  /** The next round's units: id, index, input (JSON), work, pay. */
  units: Array<[id: string, idx: number, input: string, work: number, pay: number]>;
}


/** The columns of a new Job row, in the INSERT's order (see submitJob). */
export interface JobRow {
  id: string; ownerId: string; kernel: string; params: string; chunks: number; price: number; estimate: number; leaseMs: number;
  replicas: number; quorum: number; maxReplicas: number; adaptive: number; tolerance: string | null; programHash: string | null;
  inputMode: string | null; merge: string | null; timeLimitMs: number | null;
  /** Bytes of blobs stored for its units' inputs (counted against the owner's storage until collected). */
  inputBytes?: number;
  /** The client's key for the submission (Idempotency-Key), and the sha256 of what it submitted. */
  idempotencyKey?: string | null; requestHash?: string | null;
}

/**
 * Writes volunteers, results, validations with payouts, reliability rows, job endings and new
 * jobs, in that order; call inside a write transaction.
 */
export function writeBatch(gate: SqliteGate, conn: Conn, ops: PersistOp[]) {
  const at = sqlTime(new Date());
  // Result rows by task id; columns as in the INSERT below (8 = state, 9 = paid, 14 = decidedAt).
  const results = new Map<string, unknown[]>();
  const validated: Array<Extract<PersistOp, { type: "validated" }>> = [];
  const reliability = new Map<string, ReliabilityWrite>();
  const volunteers: unknown[][] = [];
  const finished: Array<Extract<PersistOp, { type: "finish" }>> = [];
  const submitted: Array<Extract<PersistOp, { type: "submit" }>> = [];
  const backtracks: BacktrackOp[] = [];
  for (const op of ops) {
    switch (op.type) {
      case "round":
        // First: the next round's units exist before any result for them in this batch.
        storeRound(gate, conn, op);
        break;
      case "backtrack":
        backtracks.push(op);
        break;
      case "finish":
        finished.push(op);
        break;
      case "submit":
        submitted.push(op);
        break;
      case "volunteer": {
        const seen = sqlTime(new Date(op.at));
        volunteers.push([op.id, op.tokenHash, op.userId, op.name, op.nameChosen ? 1 : 0, op.benchmark ?? 1, seen, seen]);
        break;
      }
      case "result":
        results.set(op.taskId, [
          op.taskId, op.jobId, op.unitId, op.host, op.account, op.outputJson, op.digest, null, "pending", 0,
          Math.round(op.turnaroundMs), op.cpuMs === undefined ? null : Math.round(op.cpuMs), op.workMs ?? null, at, null,
        ]);
        break;
      case "error":
        results.set(op.taskId, [op.taskId, op.jobId, op.unitId, op.host, op.account, null, null, op.error, "error", 0, 0, null, null, at, at]);
        break;
      case "validated":
        validated.push(op);
        break;
      case "reliability":
        for (const row of op.rows) reliability.set(row.id, mergeReliability(reliability.get(row.id), row));
        break;
    }
  }
  // Before the results: the payouts that follow may update these rows' counters.
  if (volunteers.length) {
    // A default name never replaces one the owner chose (on /account, or with --name).
    gate.bulk(conn, `INSERT INTO "Volunteer" ("id", "tokenHash", "userId", "name", "nameChosen", "benchmarkScore", "createdAt", "lastSeenAt")
      VALUES {values} ON CONFLICT ("id") DO UPDATE SET "lastSeenAt" = excluded."lastSeenAt", "benchmarkScore" = excluded."benchmarkScore",
      "userId" = coalesce(excluded."userId", "Volunteer"."userId"),
      "name" = CASE WHEN excluded."nameChosen" OR NOT "Volunteer"."nameChosen" THEN coalesce(excluded."name", "Volunteer"."name") ELSE "Volunteer"."name" END,
      "nameChosen" = ("Volunteer"."nameChosen" OR excluded."nameChosen")`, volunteers);
  }
  // Units first: a result decided in this same batch (always, without replication) is then
  // written once in its final state instead of inserted and updated.
  if (validated.length) settle(gate, conn, validated, results, at);
  if (results.size) {
    gate.bulk(conn, `INSERT INTO "Result" ("id", "jobId", "unitId", "volunteerId", "accountId", "output", "digest", "error", "state", "paid",
      "turnaroundMs", "cpuMs", "workMs", "receivedAt", "decidedAt") VALUES {values} ON CONFLICT ("id") DO UPDATE SET "state" = excluded."state",
      "paid" = excluded."paid", "decidedAt" = excluded."decidedAt" WHERE excluded."state" <> 'pending'`, [...results.values()]);
  }
  if (reliability.size) {
    gate.bulk(conn, `INSERT INTO "Reliability" ("id", "consecutiveValid", "consecutiveInvalid", "valid", "invalid", "errors",
      "turnaroundMsTotal", "turnaroundCount", "spotChecks", "bannedUntil", "banReason", "updatedAt") VALUES {values} ON CONFLICT ("id") DO UPDATE SET
      "consecutiveValid" = excluded."consecutiveValid", "consecutiveInvalid" = excluded."consecutiveInvalid",
      "valid" = "Reliability"."valid" + excluded."valid", "invalid" = "Reliability"."invalid" + excluded."invalid",
      "errors" = "Reliability"."errors" + excluded."errors", "turnaroundMsTotal" = "Reliability"."turnaroundMsTotal" + excluded."turnaroundMsTotal",
      "turnaroundCount" = "Reliability"."turnaroundCount" + excluded."turnaroundCount", "spotChecks" = "Reliability"."spotChecks" + excluded."spotChecks",
      "banReason" = CASE WHEN excluded."bannedUntil" > coalesce("Reliability"."bannedUntil", '') THEN excluded."banReason" ELSE "Reliability"."banReason" END,
      "bannedUntil" = CASE WHEN excluded."bannedUntil" > coalesce("Reliability"."bannedUntil", '') THEN excluded."bannedUntil" ELSE "Reliability"."bannedUntil" END,
      "updatedAt" = excluded."updatedAt"`, [...reliability.values()].map((r) => [
      r.id, r.consecutiveValid, r.consecutiveInvalid, r.add.valid, r.add.invalid, r.add.errors, r.add.turnaroundMsTotal, r.add.turnaroundCount,
      r.add.spotChecks, r.bannedUntil ? sqlTime(new Date(r.bannedUntil)) : null, r.banReason, at,
    ]));
  }
  for (const end of finished) finishJob(gate, conn, end, at);
  for (const sub of submitted) insertJob(gate, conn, sub, at);
  // Last: it reads the verdicts and job endings written above. In a savepoint of its own: a
  // backtrack that fails is undone alone and logged, and never holds back the batch around it.
  for (const b of backtracks) {
    try {
      conn.transaction(() => backtrackSql(gate, conn, b, at))();
    } catch (e) {
      console.error(`backtracking ${b.host} failed: ${(e as Error).message}`);
    }
  }
}

/** A stepped round: the round's row finished (once) and, unless the job ends, the next round's units and row. */
function storeRound(gate: SqliteGate, conn: Conn, r: RoundOp) {
  const finishedAt = sqlTime(new Date(r.finishedAt));
  const { changes } = gate.statement(conn, `UPDATE "JobRound" SET "finishedAt" = ?, "latencyMs" = ?, "done" = ?, "next" = ?, "metric" = ?, "stats" = ?, "state" = ${SPENT_STATE}
    WHERE "jobId" = ? AND "round" = ? AND "finishedAt" IS NULL`).run(finishedAt, r.latencyMs, r.done ? 1 : 0, r.next, r.metric, r.stats, r.jobId, r.round);
  if (changes === 0 || r.done) return;
  gate.statement(conn, spentInputsSql("?", "?")).run(r.jobId, r.round);
  gate.bulk(conn, `INSERT INTO "WorkUnit" ("id", "jobId", "idx", "round", "input", "work", "pay") VALUES {values}`,
    r.units.map(([id, idx, input, work, pay]) => [id, r.jobId, idx, r.round + 1, input, work, pay]));
  gate.statement(conn, `INSERT INTO "JobRound" ("jobId", "round", "state", "startedAt") VALUES (?, ?, ?, ?)`).run(r.jobId, r.round + 1, r.state, finishedAt);
}

/** Two writes of one row in a batch: the later streaks and ban, the increments summed. */
export function mergeReliability(a: ReliabilityWrite | undefined, b: ReliabilityWrite): ReliabilityWrite {
  if (!a) return b;
  const add = { ...b.add };
  for (const k of Object.keys(add) as Array<keyof ReliabilityCounters>) add[k] += a.add[k];
  return { ...b, add };
}

/**
 * Ends a job still running: results still waiting for a quorum will never be paid (settled as
 * unneeded), the unused escrow goes back to the owner, and the job row takes its final state.
 */
function finishJob(gate: SqliteGate, conn: Conn, end: Extract<PersistOp, { type: "finish" }>, at: string) {
  const job = gate.statement(conn, `SELECT "ownerId", "state" FROM "Job" WHERE "id" = ?`).get(end.jobId) as { ownerId: string; state: string } | undefined;
  if (!job || job.state !== "running") return;
  gate.statement(conn, `UPDATE "Result" SET "state" = 'unneeded', "decidedAt" = ? WHERE "jobId" = ? AND "state" = 'pending'`).run(at, end.jobId);
  const escrow = gate.statement(conn, `SELECT "balance" FROM "Account" WHERE "id" = ?`).get(escrowAccount(end.jobId)) as { balance: number } | undefined;
  const left = escrow?.balance ?? 0;
  if (left > 0) {
    postTransactionSync(gate, conn, "refund", [
      { accountId: escrowAccount(end.jobId), amount: -left },
      { accountId: userAccount(job.ownerId), amount: left },
    ], { jobId: end.jobId, memo: "unused escrow returned" });
  }
  gate.statement(conn, `UPDATE "Job" SET "state" = ?, "error" = ?, "result" = ?, "resultBlob" = ?, "finishedAt" = ? WHERE "id" = ?`)
    .run(end.state, end.error ?? null, end.result ?? null, end.resultBlob ?? null, at, end.jobId);
}

/** A new job: its row, its units, its first round (iterative kernels) and its escrow hold. */
function insertJob(gate: SqliteGate, conn: Conn, s: Extract<PersistOp, { type: "submit" }>, at: string) {
  const j = s.job;
  // One writer at a time: the sum and the insert cannot interleave with another submission's.
  if (s.inputQuota && j.inputBytes) {
    const held = Number((gate.statement(conn, INPUTS_HELD_SQL("?")).get(j.ownerId) as { n: number | bigint }).n);
    if (held + j.inputBytes > s.inputQuota) throw new InputBudgetExceeded(held, s.inputQuota, j.inputBytes);
  }
  gate.statement(conn, `INSERT INTO "Job" ("id", "ownerId", "kernel", "params", "chunks", "price", "estimate", "leaseMs", "replicas",
    "quorum", "maxReplicas", "adaptive", "tolerance", "programHash", "inputMode", "merge", "timeLimitMs", "idempotencyKey", "requestHash", "inputBytes", "outputBytes", "createdAt")
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
    j.id, j.ownerId, j.kernel, j.params, j.chunks, j.price, j.estimate, j.leaseMs, j.replicas, j.quorum, j.maxReplicas, j.adaptive,
    j.tolerance, j.programHash, j.inputMode, j.merge, j.timeLimitMs, j.idempotencyKey ?? null, j.requestHash ?? null, j.inputBytes ?? 0, j.programHash ? -1 : 0, at,
  );
  gate.bulk(conn, `INSERT INTO "WorkUnit" ("id", "jobId", "idx", "round", "input", "work", "pay") VALUES {values}`,
    s.units.map(([id, idx, input, work, pay]) => [id, j.id, idx, s.round, input, work, pay]));
  if (s.roundState !== null) {
    gate.statement(conn, `INSERT INTO "JobRound" ("jobId", "round", "state", "startedAt") VALUES (?, ?, ?, ?)`).run(j.id, s.round, s.roundState, at);
  }
  postTransactionSync(gate, conn, "hold", [
    { accountId: s.ownerAccount, amount: -s.estimate },
    { accountId: s.escrow, amount: s.estimate },
  ], { jobId: j.id, memo: `escrow for ${j.kernel} job` });
}

/**
 * Marks units done (only those not done yet, of jobs still running), settles their results and pays the valid ones.
 * Verdicts on results still to be inserted (`incoming`) are written into those rows.
 */
function settle(gate: SqliteGate, conn: Conn, validated: Array<Extract<PersistOp, { type: "validated" }>>, incoming: Map<string, unknown[]>, at: string) {
  const fresh = gate.bulk<{ id: string }>(conn, `UPDATE "WorkUnit" SET "done" = 1, "output" = v.column2, "volunteerId" = v.column3,
    "completedAt" = v.column4 FROM (VALUES {values}) AS v WHERE "WorkUnit"."id" = v.column1 AND "WorkUnit"."done" = 0
    AND "WorkUnit"."jobId" IN (SELECT "id" FROM "Job" WHERE "state" = 'running') RETURNING "WorkUnit"."id" AS id`, validated.map((op) => [op.unitId, op.canonicalJson, op.valid[0]?.host ?? null, at]));
  const verdicts: unknown[][] = [];
  const escrowOf = (jobId: string) =>
    (gate.statement(conn, `SELECT "balance" FROM "Account" WHERE "id" = ?`).get(escrowAccount(jobId)) as { balance: number } | undefined)?.balance ?? 0;
  const plan = planSettlement(validated, new Set(fresh.map((r) => r.id)), escrowOf);
  for (const v of plan.verdicts) {
    // Verdicts on results still to be inserted go into those rows.
    const row = incoming.get(v.taskId);
    if (!row) verdicts.push([v.taskId, v.state, v.paid, at]);
    else {
      row[8] = v.state;
      row[9] = v.paid;
      row[14] = at;
    }
  }
  const { payouts, volunteers, jobs: jobCounts } = plan;
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

