import type pg from "pg";
import { INPUTS_HELD_SQL, InputBudgetExceeded } from "../../services/programs/inputBudget";
import { prepared } from "./prepared";
import { escrowAccount, userAccount } from "../../services/credits/accounts";
import { mergeReliability, SPENT_STATE, spentInputsSql, type PersistOp, type ReliabilityWrite, type RoundOp } from "../../services/jobs/batchSql";
import { backtrackPg } from "./backtrackPg";
import { fenceOps } from "./fencePg";
import { postTransactionPg } from "./ledgerPg";
import { planSettlement, type SettlementPlan } from "../../services/jobs/settlement";
import { insertSlices, liveNodes, sliceUnitsFor, slicesOf } from "../../cluster/slices";

// The group commit's batch on PostgreSQL, in one transaction: the same steps, guards and
// order as batchSql.ts (SQLite), read that file for what each op means. Rows go as arrays
// through `unnest`, so a batch of a thousand results is a handful of statements.
//
// Several coordinators may commit at once, so what SQLite's single writer made safe is made
// explicit here: a job's escrow row is locked (FOR UPDATE) before it pays or refunds, a unit
// is paid only while its job runs and only once (`NOT "done"`), a job ends only from running
// (its row locked, state re-checked), and counters are incremented, never written from memory.
// Rows of one table are touched in id order, so two batches never wait on each other in a circle.

type Client = pg.PoolClient;

/** Timestamps as UTC wall time: the columns are `timestamp(3)` without a zone, as Prisma writes them. */
export const pgTime = (d: Date) => d.toISOString().replace("Z", "");

/** A batch's ops by kind, merged as writing them one after the other would leave the rows. */
export interface Collected {
  results: Map<string, ResultRow>;
  validated: Array<Extract<PersistOp, { type: "validated" }>>;
  reliability: Map<string, ReliabilityWrite>;
  volunteers: Map<string, VolunteerOp>;
  finished: Array<Extract<PersistOp, { type: "finish" }>>;
  submitted: Array<Extract<PersistOp, { type: "submit" }>>;
  backtracks: Array<Extract<PersistOp, { type: "backtrack" }>>;
  rounds: RoundOp[];
}

export function collect(ops: PersistOp[], at: string): Collected {
  const results = new Map<string, ResultRow>();
  const validated: Collected["validated"] = [];
  const reliability = new Map<string, ReliabilityWrite>();
  const volunteers = new Map<string, VolunteerOp>();
  const finished: Collected["finished"] = [];
  const submitted: Collected["submitted"] = [];
  const backtracks: Collected["backtracks"] = [];
  const rounds: RoundOp[] = [];
  for (const op of ops) {
    switch (op.type) {
      case "round":
        rounds.push(op);
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
      case "volunteer":
        // One row per id (a key twice in one INSERT … ON CONFLICT is an error here), merged as
        // the two upserts one after the other would leave it.
        volunteers.set(op.id, mergeVolunteer(volunteers.get(op.id), op));
        break;
      case "result":
        results.set(op.taskId, {
          id: op.taskId, jobId: op.jobId, unitId: op.unitId, host: op.host, account: op.account, output: op.outputJson, digest: op.digest,
          error: null, state: "pending", paid: 0, turnaroundMs: Math.round(op.turnaroundMs), cpuMs: op.cpuMs === undefined ? null : Math.round(op.cpuMs),
          workMs: op.workMs ?? null, receivedAt: at, decidedAt: null,
        });
        break;
      case "error":
        results.set(op.taskId, {
          id: op.taskId, jobId: op.jobId, unitId: op.unitId, host: op.host, account: op.account, output: null, digest: null, error: op.error,
          state: "error", paid: 0, turnaroundMs: 0, cpuMs: null, workMs: null, receivedAt: at, decidedAt: at,
        });
        break;
      case "validated":
        validated.push(op);
        break;
      case "reliability":
        for (const row of op.rows) reliability.set(row.id, mergeReliability(reliability.get(row.id), row));
        break;
    }
  }
  return { results, validated, reliability, volunteers, finished, submitted, backtracks, rounds };
}

/** The batch without the ops of slices this node no longer holds (fencePg.ts), which are logged. */
export async function fencedOps(c: Client, batch: PersistOp[]): Promise<PersistOp[]> {
  const { ops, dropped } = await fenceOps(c, batch);
  if (dropped) fencedOut(dropped);
  return ops;
}

// A node that thaws drains its sockets' frames in many small batches: one line a second for them all.
let fenced = 0;
function fencedOut(n: number) {
  if (!fenced) {
    setTimeout(() => {
      console.warn(`[commit] ${fenced} result(s) and verdict(s) not written: their slice moved to another node while this one stalled past its lease`);
      fenced = 0;
    }, 1000).unref();
  }
  fenced += n;
}

/**
 * Any batch, every row lock taken up front in one order (the slices it writes into, the jobs,
 * then their escrows). The common batch of results goes through fastBatchPg.ts first and
 * comes here only when that one meets a job ending or an escrow running short.
 */
export async function writeBatchPg(c: Client, batch: PersistOp[]): Promise<void> {
  const at = pgTime(new Date());
  const ops = await fencedOps(c, batch);
  const { results, validated, reliability, volunteers, finished, submitted, backtracks, rounds } = collect(ops, at);
  // First: the next rounds' units exist before any result for them in this batch.
  for (const r of rounds) await storeRound(c, r);
  // Every job the batch decides units of or ends is locked first, in id order: after this the
  // batch takes rows of other tables only, so two batches never wait on each other in a circle.
  const jobIds = [...new Set([...validated.map((v) => v.jobId), ...finished.map((f) => f.jobId)])].sort(cmp);
  if (jobIds.length) await c.query(prepared(`SELECT 1 FROM "Job" WHERE "id" = ANY($1::text[]) ORDER BY "id" FOR UPDATE`, [jobIds]));
  if (volunteers.size) await upsertVolunteers(c, [...volunteers.values()].sort((a, b) => cmp(a.id, b.id)));
  if (validated.length) await settle(c, validated, results, at);
  if (results.size) await upsertResults(c, [...results.values()].sort((a, b) => cmp(a.id, b.id)));
  if (reliability.size) await upsertReliability(c, [...reliability.values()].sort((a, b) => cmp(a.id, b.id)), at);
  for (const end of finished) await finishJob(c, end, at);
  for (const sub of submitted) await insertJob(c, sub, at);
  for (const b of backtracks) {
    // In a savepoint of its own: a backtrack that fails is undone alone and logged.
    await c.query("SAVEPOINT backtrack");
    try {
      await backtrackPg(c, b, at);
      await c.query("RELEASE SAVEPOINT backtrack");
    } catch (e) {
      await c.query("ROLLBACK TO SAVEPOINT backtrack");
      console.error(`backtracking ${b.host} failed: ${(e as Error).message}`);
    }
  }
}

export interface ResultRow {
  id: string; jobId: string; unitId: string; host: string; account: string; output: string | null; digest: string | null; error: string | null;
  state: string; paid: number; turnaroundMs: number; cpuMs: number | null; workMs: number | null; receivedAt: string; decidedAt: string | null;
}

type VolunteerOp = Extract<PersistOp, { type: "volunteer" }>;

/** Two hellos of one volunteer in a batch: as the second upsert would leave the first's row. */
function mergeVolunteer(a: VolunteerOp | undefined, b: VolunteerOp): VolunteerOp {
  if (!a) return b;
  const chosen = b.nameChosen || !a.nameChosen;
  return {
    ...b, tokenHash: a.tokenHash, userId: b.userId ?? a.userId,
    name: chosen ? (b.name ?? a.name) : a.name, nameChosen: !!(a.nameChosen || b.nameChosen),
  };
}

export const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const col = <T, K extends keyof T>(rows: T[], k: K) => rows.map((r) => r[k]);

export async function upsertVolunteers(c: Client, rows: Array<Extract<PersistOp, { type: "volunteer" }>>) {
  const seen = rows.map((r) => pgTime(new Date(r.at)));
  // A default name never replaces one the owner chose (on /account, or with --name).
  await c.query(prepared(`INSERT INTO "Volunteer" ("id", "tokenHash", "userId", "name", "nameChosen", "benchmarkScore", "createdAt", "lastSeenAt")
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::float8[], $7::timestamp[], $7::timestamp[])
    ON CONFLICT ("id") DO UPDATE SET "lastSeenAt" = excluded."lastSeenAt", "benchmarkScore" = excluded."benchmarkScore",
    "userId" = coalesce(excluded."userId", "Volunteer"."userId"),
    "name" = CASE WHEN excluded."nameChosen" OR NOT "Volunteer"."nameChosen" THEN coalesce(excluded."name", "Volunteer"."name") ELSE "Volunteer"."name" END,
    "nameChosen" = ("Volunteer"."nameChosen" OR excluded."nameChosen")`,
  [col(rows, "id"), col(rows, "tokenHash"), col(rows, "userId"), col(rows, "name"), rows.map((r) => !!r.nameChosen), rows.map((r) => r.benchmark ?? 1), seen]));
}

export async function upsertResults(c: Client, rows: ResultRow[]) {
  await c.query(prepared(`INSERT INTO "Result" ("id", "jobId", "unitId", "volunteerId", "accountId", "output", "digest", "error", "state", "paid",
    "turnaroundMs", "cpuMs", "workMs", "receivedAt", "decidedAt")
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::int8[],
      $11::int4[], $12::int4[], $13::float8[], $14::timestamp[], $15::timestamp[])
    ON CONFLICT ("id") DO UPDATE SET "state" = excluded."state", "paid" = excluded."paid", "decidedAt" = excluded."decidedAt"
    WHERE excluded."state" <> 'pending'`,
  [col(rows, "id"), col(rows, "jobId"), col(rows, "unitId"), col(rows, "host"), col(rows, "account"), col(rows, "output"), col(rows, "digest"),
    col(rows, "error"), col(rows, "state"), col(rows, "paid"), col(rows, "turnaroundMs"), col(rows, "cpuMs"), col(rows, "workMs"),
    col(rows, "receivedAt"), col(rows, "decidedAt")]));
}

export async function upsertReliability(c: Client, rows: ReliabilityWrite[], at: string) {
  const a = (k: keyof ReliabilityWrite["add"]) => rows.map((r) => r.add[k]);
  // Counters add up; streaks are the writer's; a ban only ever extends.
  await c.query(prepared(`INSERT INTO "Reliability" ("id", "consecutiveValid", "consecutiveInvalid", "valid", "invalid", "errors",
    "turnaroundMsTotal", "turnaroundCount", "spotChecks", "bannedUntil", "banReason", "updatedAt")
    SELECT v.*, $12::timestamp FROM unnest($1::text[], $2::int4[], $3::int4[], $4::int4[], $5::int4[], $6::int4[], $7::float8[], $8::int4[],
      $9::int4[], $10::timestamp[], $11::text[]) AS v
    ON CONFLICT ("id") DO UPDATE SET
    "consecutiveValid" = excluded."consecutiveValid", "consecutiveInvalid" = excluded."consecutiveInvalid",
    "valid" = "Reliability"."valid" + excluded."valid", "invalid" = "Reliability"."invalid" + excluded."invalid",
    "errors" = "Reliability"."errors" + excluded."errors", "turnaroundMsTotal" = "Reliability"."turnaroundMsTotal" + excluded."turnaroundMsTotal",
    "turnaroundCount" = "Reliability"."turnaroundCount" + excluded."turnaroundCount", "spotChecks" = "Reliability"."spotChecks" + excluded."spotChecks",
    "banReason" = CASE WHEN excluded."bannedUntil" > coalesce("Reliability"."bannedUntil", '-infinity') THEN excluded."banReason" ELSE "Reliability"."banReason" END,
    "bannedUntil" = greatest("Reliability"."bannedUntil", excluded."bannedUntil"),
    "updatedAt" = excluded."updatedAt"`,
  [col(rows, "id"), col(rows, "consecutiveValid"), col(rows, "consecutiveInvalid"), a("valid"), a("invalid"), a("errors"), a("turnaroundMsTotal"),
    a("turnaroundCount"), a("spotChecks"), rows.map((r) => (r.bannedUntil ? pgTime(new Date(r.bannedUntil)) : null)), col(rows, "banReason"), at]));
}

/**
 * Ends a job still running, under a lock on its row (another coordinator may be ending it too):
 * results still waiting for a quorum are settled as unneeded, the unused escrow goes back to
 * the owner, and the job row takes its final state.
 */
async function finishJob(c: Client, end: Extract<PersistOp, { type: "finish" }>, at: string) {
  const { rows } = await c.query<{ ownerId: string; state: string }>(prepared(`SELECT "ownerId", "state" FROM "Job" WHERE "id" = $1 FOR UPDATE`, [end.jobId]));
  const job = rows[0];
  end.ended = !!job && job.state === "running";
  if (!end.ended) return;
  await c.query(prepared(`UPDATE "Result" SET "state" = 'unneeded', "decidedAt" = $1 WHERE "jobId" = $2 AND "state" = 'pending'`, [at, end.jobId]));
  const left = (await lockBalances(c, [escrowAccount(end.jobId)])).get(escrowAccount(end.jobId)) ?? 0;
  if (left > 0) {
    await postTransactionPg(c, "refund", [
      { accountId: escrowAccount(end.jobId), amount: -left },
      { accountId: userAccount(job.ownerId), amount: left },
    ], { jobId: end.jobId, memo: "unused escrow returned" }, at);
  }
  await c.query(prepared(`UPDATE "Job" SET "state" = $1, "error" = $2, "result" = $3, "resultBlob" = $4, "finishedAt" = $5 WHERE "id" = $6`,
    [end.state, end.error ?? null, end.result ?? null, end.resultBlob ?? null, at, end.jobId]));
}

/** A new job: its row, its units, its first round (iterative kernels) and its escrow hold. */
/** A stepped round (batchSql.ts's storeRound): the round's row finished once and, unless the job ends, the next round's units and row. */
async function storeRound(c: Client, r: RoundOp) {
  const finishedAt = pgTime(new Date(r.finishedAt));
  const { rowCount } = await c.query(prepared(`UPDATE "JobRound" SET "finishedAt" = $1, "latencyMs" = $2, "done" = $3, "next" = $4, "metric" = $5, "stats" = $6, "state" = ${SPENT_STATE}
    WHERE "jobId" = $7 AND "round" = $8 AND "finishedAt" IS NULL`, [finishedAt, r.latencyMs, r.done, r.next, r.metric, r.stats, r.jobId, r.round]));
  if (!rowCount || r.done) return;
  await c.query(prepared(spentInputsSql("$1", "$2"), [r.jobId, r.round]));
  const u = r.units;
  await c.query(prepared(`INSERT INTO "WorkUnit" ("id", "jobId", "idx", "round", "input", "work", "pay")
    SELECT v.id, $1, v.idx, $2, v.input, v.work, v.pay FROM unnest($3::text[], $4::int4[], $5::text[], $6::int4[], $7::int8[]) AS v(id, idx, input, work, pay)`,
  [r.jobId, r.round + 1, u.map((x) => x[0]), u.map((x) => x[1]), u.map((x) => x[2]), u.map((x) => x[3]), u.map((x) => x[4])]));
  await c.query(prepared(`INSERT INTO "JobRound" ("jobId", "round", "state", "startedAt") VALUES ($1, $2, $3, $4)`, [r.jobId, r.round + 1, r.state, finishedAt]));
}

async function insertJob(c: Client, s: Extract<PersistOp, { type: "submit" }>, at: string) {
  const j = s.job;
  // The owner's submissions on every node take turns here until their transactions end, so
  // none of them sums the budget without the others' jobs (12 at once all passed it before).
  if (s.inputQuota && j.inputBytes) {
    await c.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`inputs:${j.ownerId}`]);
    const held = Number((await c.query<{ n: string }>(INPUTS_HELD_SQL("$1"), [j.ownerId])).rows[0]?.n ?? 0);
    if (held + j.inputBytes > s.inputQuota) throw new InputBudgetExceeded(held, s.inputQuota, j.inputBytes);
  }
  await c.query(prepared(`INSERT INTO "Job" ("id", "ownerId", "kernel", "params", "chunks", "price", "estimate", "leaseMs", "replicas",
    "quorum", "maxReplicas", "adaptive", "tolerance", "programHash", "inputMode", "merge", "timeLimitMs", "idempotencyKey", "requestHash", "inputBytes", "outputBytes", "createdAt")
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)`, [
    j.id, j.ownerId, j.kernel, j.params, j.chunks, j.price, j.estimate, j.leaseMs, j.replicas, j.quorum, j.maxReplicas, !!j.adaptive,
    j.tolerance, j.programHash, j.inputMode, j.merge, j.timeLimitMs, j.idempotencyKey ?? null, j.requestHash ?? null, j.inputBytes ?? 0, j.programHash ? -1 : 0, at,
  ]));
  const u = s.units;
  await c.query(prepared(`INSERT INTO "WorkUnit" ("id", "jobId", "idx", "round", "input", "work", "pay")
    SELECT v.id, $1, v.idx, $2, v.input, v.work, v.pay FROM unnest($3::text[], $4::int4[], $5::text[], $6::int4[], $7::int8[]) AS v(id, idx, input, work, pay)`,
  [j.id, s.round, u.map((x) => x[0]), u.map((x) => x[1]), u.map((x) => x[2]), u.map((x) => x[3]), u.map((x) => x[4])]));
  if (s.roundState !== null) {
    await c.query(prepared(`INSERT INTO "JobRound" ("jobId", "round", "state", "startedAt") VALUES ($1, $2, $3, $4)`, [j.id, s.round, s.roundState, at]));
  }
  // Cluster mode's unit of dispatch (server/cluster/slices.ts): an iterative job's round is one slice.
  await insertSlices(c, slicesOf(j.id, s.round, u.length, s.round > 0 ? u.length : sliceUnitsFor(u.length, await liveNodes(c))));
  await postTransactionPg(c, "hold", [
    { accountId: s.ownerAccount, amount: -s.estimate },
    { accountId: s.escrow, amount: s.estimate },
  ], { jobId: j.id, memo: `escrow for ${j.kernel} job` }, at);
}

/** Locks accounts' rows (in id order) and returns their balances. */
export async function lockBalances(c: Client, ids: string[]): Promise<Map<string, number>> {
  const { rows } = await c.query<{ id: string; balance: number }>(
    `SELECT "id", "balance" FROM "Account" WHERE "id" = ANY($1::text[]) ORDER BY "id" FOR UPDATE`, [[...new Set(ids)]]);
  return new Map(rows.map((r) => [r.id, r.balance]));
}

/**
 * Marks units done (only those not done yet, of jobs still running), settles their results and
 * pays the valid ones out of their jobs' escrow, which is locked first: two coordinators paying
 * out of one escrow never both see what only one of them may spend.
 */
async function settle(c: Client, validated: Array<Extract<PersistOp, { type: "validated" }>>, incoming: Map<string, ResultRow>, at: string) {
  const byUnit = [...validated].sort((a, b) => cmp(a.unitId, b.unitId));
  // Jobs, then their escrows: the order finishJob takes them in too.
  const { rows: running } = await c.query<{ id: string }>(prepared(`SELECT "id" FROM "Job" WHERE "id" = ANY($1::text[]) AND "state" = 'running' ORDER BY "id" FOR UPDATE`,
    [[...new Set(byUnit.map((op) => op.jobId))]]));
  const escrows = await lockBalances(c, running.map((j) => escrowAccount(j.id)));
  const { rows: fresh } = await c.query<{ id: string }>(prepared(`UPDATE "WorkUnit" AS u SET "done" = true, "output" = v.output, "volunteerId" = v.host, "completedAt" = $4
    FROM unnest($1::text[], $2::text[], $3::text[]) AS v(id, output, host)
    WHERE u."id" = v.id AND NOT u."done" AND u."jobId" = ANY($5::text[])
    RETURNING u."id"`, [byUnit.map((op) => op.unitId), byUnit.map((op) => op.canonicalJson), byUnit.map((op) => op.valid[0]?.host ?? null), at, running.map((j) => j.id)]));
  const plan = planSettlement(validated, new Set(fresh.map((r) => r.id)), (jobId) => escrows.get(escrowAccount(jobId)) ?? 0);
  const { payouts, volunteers, jobs: jobCounts } = plan;
  await writeVerdicts(c, plan, incoming, at);
  for (const [jobId, list] of [...payouts].sort((a, b) => cmp(a[0], b[0]))) {
    const total = list.reduce((s, p) => s + p.amount, 0);
    if (total > 0) await postTransactionPg(c, "payout", [{ accountId: escrowAccount(jobId), amount: -total }, ...list], { jobId }, at);
  }
  await addVolunteerCounts(c, plan);
  if (jobCounts.size) {
    const j = [...jobCounts].sort((a, b) => cmp(a[0], b[0]));
    await c.query(prepared(`UPDATE "Job" AS x SET "unitsDone" = x."unitsDone" + v.units, "cost" = x."cost" + v.cost
      FROM unnest($1::text[], $2::int4[], $3::int8[]) AS v(id, units, cost) WHERE x."id" = v.id`,
    [j.map((e) => e[0]), j.map((e) => e[1].units), j.map((e) => e[1].cost)]));
  }
}

/**
 * The plan's verdicts: those on results of this batch go into their rows before they are
 * inserted (so call this before upsertResults), the others are updated in place.
 */
export function writeVerdicts(c: Client, plan: SettlementPlan, incoming: Map<string, ResultRow>, at: string): Promise<unknown> | undefined {
  const verdicts: Array<[string, string, number]> = [];
  for (const v of plan.verdicts) {
    const row = incoming.get(v.taskId);
    if (!row) verdicts.push([v.taskId, v.state, v.paid]);
    else {
      row.state = v.state;
      row.paid = v.paid;
      row.decidedAt = at;
    }
  }
  if (!verdicts.length) return;
  verdicts.sort((a, b) => cmp(a[0], b[0]));
  return c.query(prepared(`UPDATE "Result" AS r SET "state" = v.state, "paid" = v.paid, "decidedAt" = $4
    FROM unnest($1::text[], $2::text[], $3::int8[]) AS v(id, state, paid) WHERE r."id" = v.id`,
  [verdicts.map((v) => v[0]), verdicts.map((v) => v[1]), verdicts.map((v) => v[2]), at]));
}

/** Each paid volunteer's tasks and earnings. */
export function addVolunteerCounts(c: Client, plan: SettlementPlan): Promise<unknown> | undefined {
  if (!plan.volunteers.size) return;
  const v = [...plan.volunteers].sort((a, b) => cmp(a[0], b[0]));
  return c.query(prepared(`UPDATE "Volunteer" AS x SET "tasksDone" = x."tasksDone" + v.tasks, "earned" = x."earned" + v.earned
    FROM unnest($1::text[], $2::int4[], $3::int8[]) AS v(id, tasks, earned) WHERE x."id" = v.id`,
  [v.map((e) => e[0]), v.map((e) => e[1].tasks), v.map((e) => e[1].earned)]));
}
