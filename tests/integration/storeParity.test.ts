import crypto from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { anonAccount, escrowAccount, SYSTEM_GRANTS, userAccount } from "../../server/services/credits/accounts";
import { auditLedger, postTransaction } from "../../server/services/credits/ledger";
import type { PersistOp, ReliabilityWrite, ResultRef } from "../../server/services/jobs/batchSql";
import { roundUnitId } from "../../server/services/jobs/rounds";
import { hotStore } from "../../server/store/hotStore";
import { OUTPUT_PAGE } from "../../server/store/outputPage";
import { createPrisma, type Db } from "../../server/store/prisma";
import { postgresDatabase, postgresUnavailable, releaseEngines, sqliteDatabase } from "../helpers/engines";
import { seededRandom } from "../helpers/random";

// The group commit's two implementations, batchSql.ts (SQLite) and batchPg.ts (PostgreSQL),
// given the same batches of PersistOp through hotStore(db).write, must leave the same state:
// jobs, units, results, balances, ledger transactions, volunteers, reliability records. Each
// scenario also checks its expected figures on each engine, so that both agreeing on a wrong
// answer fails too. Ops are built as the coordinator and submitJob build them.
//
// Both engines run whichever engine the run is on (see helpers/engines.ts); without a
// reachable PostgreSQL, on a SQLite run, only the SQLite half runs (with a warning).

interface Engine {
  kind: "sqlite" | "postgres";
  db: Db;
  remove(): Promise<void>;
}

let engines: Engine[] = [];

// Each test on a fresh pair of databases, so that one difference is reported once, by the
// test that makes it.
beforeEach(async () => {
  const lite = await sqliteDatabase();
  engines = [{ kind: "sqlite", db: createPrisma(lite.databaseUrl), remove: lite.remove }];
  const pgDb = await postgresDatabase();
  if (pgDb) engines.push({ kind: "postgres", db: createPrisma(pgDb.databaseUrl), remove: pgDb.remove });
});

afterEach(async () => {
  for (const e of engines) {
    await hotStore(e.db).close();
    await e.db.$disconnect();
    await e.remove();
  }
});

/** Throws (the file fails) on a PostgreSQL run whose server does not answer. */
const pgMissing = await postgresUnavailable();
const pgHere = !pgMissing;

beforeAll(() => {
  if (pgMissing) console.warn(`${pgMissing}: storeParity checks SQLite alone, with nothing to compare it with`);
});

afterAll(releaseEngines);

// ---- writing on both ----------------------------------------------------------------------

/** Writes each batch on every engine (one after the other, as one group commit would). */
async function write(...batches: PersistOp[][]) {
  for (const ops of batches) await Promise.all(engines.map((e) => hotStore(e.db).write(ops)));
}

/** Runs checks on every engine; `on` names the engine in assertion messages. */
async function each(check: (db: Db, on: string) => Promise<void>) {
  for (const e of engines) await check(e.db, e.kind);
}

async function user(id: string, credits = 0) {
  await each(async (db) => {
    await db.user.create({ data: { id, email: `${id}@example.test`, passwordHash: "x" } });
    if (credits) {
      await db.$transaction((tx) =>
        postTransaction(tx, "grant", [{ accountId: SYSTEM_GRANTS, amount: -credits }, { accountId: userAccount(id), amount: credits }], { memo: "starter grant" }));
    }
  });
}

// ---- ops, shaped as the coordinator and submitJob shape them --------------------------------

const sha256 = (s: string) => crypto.createHash("sha256").update(s).digest("hex");
const unitOf = (jobId: string, idx: number) => roundUnitId(jobId, 0, idx);
const jobOfUnit = (unitId: string) => unitId.slice(0, unitId.indexOf("."));
const taskOf = (unitId: string, host: string) => `${unitId}~${host}`;

/** A job's submit: units priced by `pays`, the escrow holding every unit paid to a full quorum (unless `estimate`). */
function submitOp(jobId: string, ownerId: string, pays: number[], o: { quorum?: number; estimate?: number; round?: number; roundState?: string } = {}): PersistOp {
  const quorum = o.quorum ?? 2;
  const round = o.round ?? 0;
  const estimate = o.estimate ?? pays.reduce((s, p) => s + p, 0) * quorum;
  return {
    type: "submit",
    job: {
      id: jobId, ownerId, kernel: "sum", params: JSON.stringify({ n: pays.length }), chunks: pays.length, price: 1000, estimate, leaseMs: 30_000,
      replicas: quorum, quorum, maxReplicas: quorum + 3, adaptive: 1, tolerance: null, programHash: null, inputMode: null, merge: null, timeLimitMs: null,
    },
    units: pays.map((pay, idx) => [roundUnitId(jobId, round, idx), idx, JSON.stringify({ idx }), 1000, pay]),
    round, roundState: o.roundState ?? null, ownerAccount: userAccount(ownerId), escrow: escrowAccount(jobId), estimate,
  };
}

function volunteerOp(id: string, o: { name?: string | null; nameChosen?: boolean; userId?: string | null; benchmark?: number | null } = {}): PersistOp {
  return {
    type: "volunteer", id, tokenHash: sha256(`secret of ${id}`), userId: o.userId ?? null, name: o.name === undefined ? `Chrome on Linux · ${id}` : o.name,
    nameChosen: o.nameChosen ?? false, benchmark: o.benchmark === undefined ? 1.25 : o.benchmark, at: new Date().toISOString(),
  };
}

function resultOp(unitId: string, host: string, output: unknown, account = anonAccount(host)): PersistOp {
  const outputJson = JSON.stringify(output);
  return {
    type: "result", taskId: taskOf(unitId, host), jobId: jobOfUnit(unitId), unitId, host, account, outputJson, digest: sha256(outputJson),
    turnaroundMs: 1234.4, cpuMs: 812.6, workMs: 812.6 * 1.25,
  };
}

const ref = (unitId: string, host: string, pay: number, account = anonAccount(host)): ResultRef => ({ taskId: taskOf(unitId, host), host, account, pay });

function validatedOp(unitId: string, output: unknown, valid: ResultRef[], invalid: ResultRef[] = []): PersistOp {
  return { type: "validated", jobId: jobOfUnit(unitId), unitId, canonicalJson: JSON.stringify(output), valid, invalid };
}

function errorOp(unitId: string, host: string, error: string, taskId = taskOf(unitId, host)): PersistOp {
  return { type: "error", taskId, jobId: jobOfUnit(unitId), unitId, host, account: anonAccount(host), error };
}

const finishOp = (jobId: string, state: "completed" | "failed" | "cancelled", extra: { error?: string; result?: string } = {}): PersistOp =>
  ({ type: "finish", jobId, state, ...extra });

const ZERO = { valid: 0, invalid: 0, errors: 0, turnaroundMsTotal: 0, turnaroundCount: 0, spotChecks: 0 };

function reliabilityRow(id: string, streaks: [valid: number, invalid: number], add: Partial<typeof ZERO>, ban: [Date, string] | null = null): ReliabilityWrite {
  return { id, consecutiveValid: streaks[0], consecutiveInvalid: streaks[1], add: { ...ZERO, ...add }, bannedUntil: ban?.[0] ?? null, banReason: ban?.[1] ?? null };
}

// ---- reading ------------------------------------------------------------------------------

const byId = <T extends { id: string }>(rows: T[]) => [...rows].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

async function balance(db: Db, accountId: string): Promise<number> {
  return (await db.account.findUnique({ where: { id: accountId }, select: { balance: true } }))?.balance ?? 0;
}

async function jobOf(db: Db, id: string) {
  const j = await db.job.findUniqueOrThrow({ where: { id }, select: { state: true, unitsDone: true, cost: true, error: true, result: true, finishedAt: true } });
  const { finishedAt, ...rest } = j;
  return { ...rest, finished: finishedAt !== null };
}

async function unitsOf(db: Db, jobId: string) {
  const rows = await db.workUnit.findMany({ where: { jobId }, orderBy: { idx: "asc" }, select: { done: true, output: true, volunteerId: true, completedAt: true } });
  return rows.map(({ completedAt, ...u }) => ({ ...u, completed: completedAt !== null }));
}

/** A job's results as { taskId: "state paid" }. */
async function verdictsOf(db: Db, jobId: string): Promise<Record<string, string>> {
  const rows = await db.result.findMany({ where: { jobId }, select: { id: true, state: true, paid: true } });
  return Object.fromEntries(byId(rows).map((r) => [r.id, `${r.state} ${r.paid}`]));
}

async function volunteerOf(db: Db, id: string) {
  return db.volunteer.findUnique({ where: { id }, select: { name: true, nameChosen: true, userId: true, tasksDone: true, earned: true, benchmarkScore: true } });
}

/** A job's ledger transactions of one kind, each as its moves sorted by account. */
async function transactions(db: Db, jobId: string, kind: string) {
  const entries = await db.ledgerEntry.findMany({ where: { jobId, kind }, select: { txId: true, accountId: true, amount: true } });
  const txs = new Map<string, Record<string, number>>();
  for (const e of entries.sort((a, b) => (a.accountId < b.accountId ? -1 : 1))) {
    (txs.get(e.txId) ?? txs.set(e.txId, {}).get(e.txId)!)[e.accountId] = e.amount;
  }
  return [...txs.values()];
}

/** Everything the store's writes decide, without ids and times that differ between two runs. */
async function snapshot(db: Db) {
  const [jobs, units, results, accounts, entries, volunteers, reliability, rounds] = await Promise.all([
    db.job.findMany({ select: { id: true, state: true, unitsDone: true, cost: true, estimate: true, error: true, result: true, resultBlob: true, finishedAt: true } }),
    db.workUnit.findMany({ select: { id: true, jobId: true, round: true, done: true, output: true, volunteerId: true, pay: true, completedAt: true } }),
    db.result.findMany({
      select: {
        id: true, jobId: true, unitId: true, volunteerId: true, accountId: true, output: true, digest: true, error: true, state: true, paid: true,
        turnaroundMs: true, cpuMs: true, workMs: true, decidedAt: true,
      },
    }),
    db.account.findMany({ select: { id: true, kind: true, balance: true } }),
    db.ledgerEntry.findMany({ select: { txId: true, accountId: true, amount: true, kind: true, jobId: true, memo: true } }),
    db.volunteer.findMany({ select: { id: true, tokenHash: true, userId: true, name: true, nameChosen: true, tasksDone: true, earned: true, benchmarkScore: true } }),
    db.reliability.findMany({
      select: {
        id: true, consecutiveValid: true, consecutiveInvalid: true, valid: true, invalid: true, errors: true, turnaroundMsTotal: true,
        turnaroundCount: true, spotChecks: true, bannedUntil: true, banReason: true,
      },
    }),
    db.jobRound.findMany({ select: { jobId: true, round: true, state: true, done: true } }),
  ]);
  const txs = new Map<string, typeof entries>();
  const ledgerByAccount: Record<string, number> = {};
  for (const e of entries) {
    (txs.get(e.txId) ?? txs.set(e.txId, []).get(e.txId)!).push(e);
    ledgerByAccount[e.accountId] = (ledgerByAccount[e.accountId] ?? 0) + e.amount;
  }
  const transactions = [...txs.values()].map((es) => {
    const moves = es.map((e) => `${e.accountId} ${e.amount}`).sort();
    return `${es[0].kind} job=${es[0].jobId} memo=${es[0].memo} sum=${es.reduce((s, e) => s + e.amount, 0)}: ${moves.join(", ")}`;
  }).sort();
  return {
    jobs: byId(jobs).map(({ finishedAt, ...j }) => ({ ...j, finished: finishedAt !== null })),
    units: byId(units).map(({ completedAt, ...u }) => ({ ...u, completed: completedAt !== null })),
    results: byId(results).map(({ decidedAt, ...r }) => ({ ...r, decided: decidedAt !== null })),
    accounts: byId(accounts),
    ledgerByAccount: Object.fromEntries(Object.entries(ledgerByAccount).sort()),
    transactions,
    volunteers: byId(volunteers),
    reliability: byId(reliability).map((r) => ({ ...r, bannedUntil: r.bannedUntil?.toISOString() ?? null })),
    rounds: rounds.map((r) => ({ ...r, id: `${r.jobId}#${r.round}` })).sort((a, b) => (a.id < b.id ? -1 : 1)),
  };
}

/** Both engines hold the same state, table by table, and each one's books balance. */
async function expectSameState() {
  const snaps = await Promise.all(engines.map((e) => snapshot(e.db)));
  for (const e of engines) {
    const audit = await auditLedger(e.db);
    expect(audit, `ledger audit on ${e.kind}`).toMatchObject({ ok: true, total: 0, unbalancedTx: [], driftedAccounts: [], negativeAccounts: [] });
  }
  for (const s of snaps) for (const t of s.transactions) expect(t, "every ledger transaction sums to 0").toContain(" sum=0:");
  if (snaps.length < 2) return;
  const [lite, pg] = snaps;
  for (const table of Object.keys(lite) as Array<keyof typeof lite>) {
    expect(pg[table], `${table}: PostgreSQL (received) against SQLite (expected)`).toEqual(lite[table]);
  }
}

// ---- scenarios ----------------------------------------------------------------------------

describe("the SQLite and PostgreSQL batch writers leave the same state", () => {
  it("a submit holds its estimate in escrow, and an iterative job starts its first round", async () => {
    await user("alice", 100_000);
    await write([submitOp("jSubmit", "alice", [1000, 1500, 2000])]);
    await write([submitOp("jRounds", "alice", [500, 500], { quorum: 1, estimate: 5000, round: 1, roundState: '{"centroids":[[0,0],[1,1]]}' })]);
    await each(async (db, on) => {
      expect(await jobOf(db, "jSubmit"), on).toEqual({ state: "running", unitsDone: 0, cost: 0, error: null, result: null, finished: false });
      const units = await db.workUnit.findMany({ where: { jobId: "jSubmit" }, orderBy: { idx: "asc" }, select: { id: true, round: true, pay: true, done: true } });
      expect(units, on).toEqual([
        { id: "jSubmit.0", round: 0, pay: 1000, done: false }, { id: "jSubmit.1", round: 0, pay: 1500, done: false }, { id: "jSubmit.2", round: 0, pay: 2000, done: false },
      ]);
      expect(await balance(db, userAccount("alice")), on).toBe(100_000 - 9000 - 5000);
      expect(await balance(db, escrowAccount("jSubmit")), on).toBe(9000);
      expect(await balance(db, escrowAccount("jRounds")), on).toBe(5000);
      expect(await transactions(db, "jSubmit", "hold"), on).toEqual([{ "escrow:jSubmit": 9000, "user:alice": -9000 }]);
      expect(await db.jobRound.findMany({ where: { jobId: "jRounds" }, select: { round: true, state: true, done: true } }), on)
        .toEqual([{ round: 1, state: '{"centroids":[[0,0],[1,1]]}', done: false }]);
      expect((await db.workUnit.findMany({ where: { jobId: "jRounds" }, orderBy: { idx: "asc" } })).map((u) => u.id), on).toEqual(["jRounds.r1.0", "jRounds.r1.1"]);
      expect(await hotStore(db).unitOutputs("jSubmit"), on).toEqual([{ output: null, done: false }, { output: null, done: false }, { output: null, done: false }]);
    });
    await expectSameState();
  });

  it("a stepped round finishes its row once and starts the next, whose results may follow in the same batch", async () => {
    await user("alice", 100_000);
    await write([submitOp("jStep", "alice", [500, 500], { quorum: 1, estimate: 5000, round: 1, roundState: '{"w":[0]}' })]);
    const round = (r: number, done: boolean, state: string): PersistOp => ({
      type: "round", jobId: "jStep", round: r, finishedAt: new Date(Date.UTC(2026, 11, 5, 3, r)).toISOString(), latencyMs: 40 + r, done,
      // The whole step is kept only when it ended the job (what a restart needs to end it again).
      next: done ? JSON.stringify({ done, result: { w: [r] }, state: JSON.parse(state), metrics: { loss: 1 / r } }) : null, metric: 1 / r, stats: JSON.stringify({ loss: 1 / r }), state,
      units: done ? [] : [0, 1].map((idx) => [roundUnitId("jStep", r + 1, idx), idx, JSON.stringify({ blob: "b", context: { round: r + 1 } }), 7, 500]),
    });
    const r1 = [0, 1].map((idx) => roundUnitId("jStep", 1, idx));
    await write([resultOp(r1[0], "h1", [1]), validatedOp(r1[0], [1], [ref(r1[0], "h1", 500)]), resultOp(r1[1], "h2", [2]), validatedOp(r1[1], [2], [ref(r1[1], "h2", 500)])]);
    // The step's op, then (in the same batch) a result of the round it started; a second write of the same step changes nothing.
    const r2 = roundUnitId("jStep", 2, 0);
    await write([round(1, false, '{"w":[1]}'), resultOp(r2, "h1", [3]), validatedOp(r2, [3], [ref(r2, "h1", 500)])]);
    await write([round(1, false, '{"w":[99]}')]);
    await write([round(2, true, '{"w":[2]}')]);
    await each(async (db, on) => {
      const rows = await db.jobRound.findMany({ where: { jobId: "jStep" }, orderBy: { round: "asc" }, select: { round: true, state: true, next: true, done: true, latencyMs: true, metric: true, finishedAt: true } });
      // A stepped round's row keeps neither the state it started from nor (unless it ended the job) the step.
      expect(rows, on).toEqual([
        { round: 1, state: "null", next: null, done: false, latencyMs: 41, metric: 1, finishedAt: new Date(Date.UTC(2026, 11, 5, 3, 1)) },
        { round: 2, state: "null", next: '{"done":true,"result":{"w":[2]},"state":{"w":[2]},"metrics":{"loss":0.5}}', done: true, latencyMs: 42, metric: 0.5, finishedAt: new Date(Date.UTC(2026, 11, 5, 3, 2)) },
      ]);
      const units = await db.workUnit.findMany({ where: { jobId: "jStep" }, orderBy: { id: "asc" }, select: { id: true, round: true, work: true, pay: true, done: true } });
      expect(units, on).toEqual([
        { id: "jStep.r1.0", round: 1, work: 1000, pay: 500, done: true }, { id: "jStep.r1.1", round: 1, work: 1000, pay: 500, done: true },
        { id: "jStep.r2.0", round: 2, work: 7, pay: 500, done: true }, { id: "jStep.r2.1", round: 2, work: 7, pay: 500, done: false },
      ]);
      // The raw read every step makes: the round's row and its job's stop flag, dates as the query engine reads them.
      const started = new Date(Date.UTC(2026, 11, 5, 3, 1));
      expect(await hotStore(db).roundRow("jStep", 2), on).toEqual({ state: "null", startedAt: started, finishedAt: new Date(Date.UTC(2026, 11, 5, 3, 2)), stopAfterRound: false });
      await db.job.update({ where: { id: "jStep" }, data: { stopAfterRound: true } });
      expect(await hotStore(db).roundRow("jStep", 1), on).toMatchObject({ state: "null", stopAfterRound: true });
      expect(await hotStore(db).roundRow("jStep", 3), on).toBeUndefined();
    });
    await expectSameState();
  });

  it("a submit the owner cannot pay for throws InsufficientCredits and changes nothing, not even the rest of its batch", async () => {
    await user("bob", 1000);
    const poor = [volunteerOp("vBob", { userId: "bob", name: "Bob's laptop", nameChosen: true }), submitOp("jPoor", "bob", [1000, 1000])];
    for (const e of engines) {
      const err = await hotStore(e.db).write(poor).then(() => undefined, (x: Error & { needed?: number; available?: number }) => x);
      expect(err, `${e.kind} accepted a submit of 4 credits from a balance of 1`).toBeDefined();
      expect({ name: err!.name, needed: err!.needed, available: err!.available, message: err!.message }, e.kind).toEqual({
        name: "InsufficientCredits", needed: 4000, available: 1000, message: "Not enough credits: this needs 4 credits and the balance is 1.",
      });
    }
    await each(async (db, on) => {
      expect(await db.job.findUnique({ where: { id: "jPoor" } }), on).toBeNull();
      expect(await db.workUnit.count({ where: { jobId: "jPoor" } }), on).toBe(0);
      expect(await db.volunteer.findUnique({ where: { id: "vBob" } }), on).toBeNull();
      expect(await db.account.findUnique({ where: { id: escrowAccount("jPoor") } }), on).toBeNull();
      expect(await db.ledgerEntry.count({ where: { OR: [{ jobId: "jPoor" }, { accountId: userAccount("bob"), kind: { not: "grant" } }] } }), on).toBe(0);
      expect(await balance(db, userAccount("bob")), on).toBe(1000);
    });
    // What the balance covers still goes through.
    await write([submitOp("jBob", "bob", [500])]);
    await each(async (db, on) => {
      expect((await jobOf(db, "jBob")).state, on).toBe("running");
      expect(await balance(db, userAccount("bob")), on).toBe(0);
      expect(await balance(db, escrowAccount("jBob")), on).toBe(1000);
    });
    await expectSameState();
  });

  it("volunteers: created on first sight, refreshed after, a chosen name never replaced by a default one", async () => {
    await user("carol");
    await write(
      [
        volunteerOp("vA", { name: "Chrome on Linux · a1" }),
        volunteerOp("vB", { name: "Bee", nameChosen: true, benchmark: 1.5 }),
        volunteerOp("vC", { name: "Firefox on macOS · c3", userId: "carol" }),
      ],
      [
        volunteerOp("vA", { name: "Ann", nameChosen: true }),
        volunteerOp("vB", { name: "Chrome on Windows · b2", benchmark: 2 }),
        // Signed out now: the row keeps its user.
        volunteerOp("vC", { name: "Firefox on macOS · c3", userId: null }),
      ],
      [volunteerOp("vA", { name: "Chrome on Linux · a1" }), volunteerOp("vD", { name: null, benchmark: null })],
    );
    await each(async (db, on) => {
      expect(await volunteerOf(db, "vA"), on).toMatchObject({ name: "Ann", nameChosen: true, userId: null, tasksDone: 0, earned: 0, benchmarkScore: 1.25 });
      expect(await volunteerOf(db, "vB"), on).toMatchObject({ name: "Bee", nameChosen: true, benchmarkScore: 2 });
      expect(await volunteerOf(db, "vC"), on).toMatchObject({ name: "Firefox on macOS · c3", nameChosen: false, userId: "carol" });
      // No name and no benchmark: the column defaults.
      expect(await volunteerOf(db, "vD"), on).toMatchObject({ name: null, nameChosen: false, benchmarkScore: 1 });
      expect(await hotStore(db).volunteerTokenHash("vA"), on).toBe(sha256("secret of vA"));
      expect(await hotStore(db).volunteerTokenHash("nobody"), on).toBeUndefined();
    });
    await expectSameState();
  });

  /** Two connections of one id (a signed-in CLI with --name, and a tab) in one group commit. */
  async function sameVolunteerTwice() {
    await user("dora");
    await write([
      volunteerOp("vE", { name: "Eve's server", nameChosen: true, userId: "dora", benchmark: 3 }),
      volunteerOp("vE", { name: "Chrome on Linux · e5", userId: null, benchmark: 1.5 }),
      volunteerOp("vF", { name: "Chrome on Linux · f6" }),
      volunteerOp("vF", { name: "Fay", nameChosen: true }),
    ]);
    // The same, for a volunteer already known.
    await write([volunteerOp("vG")]);
    await write([volunteerOp("vG", { name: "Gus", nameChosen: true, userId: "dora" }), volunteerOp("vG", { name: "Chrome on Linux · g7", userId: null })]);
  }

  const twiceExpected = async (db: Db, on: string) => {
    expect(await volunteerOf(db, "vE"), on).toMatchObject({ name: "Eve's server", nameChosen: true, userId: "dora", benchmarkScore: 1.5 });
    expect(await volunteerOf(db, "vF"), on).toMatchObject({ name: "Fay", nameChosen: true, userId: null });
    expect(await volunteerOf(db, "vG"), on).toMatchObject({ name: "Gus", nameChosen: true, userId: "dora" });
  };

  it("the same volunteer twice in one batch ends as if its hellos were written one after the other (SQLite)", async () => {
    await sameVolunteerTwice();
    await twiceExpected(engines[0].db, engines[0].kind);
  });

  // KNOWN BUG, batchPg.ts: of a batch's volunteer ops for one id only the last is written
  // (`volunteers.set(op.id, op)`), so what an earlier hello of that batch brought, a chosen
  // name or a signed-in user, is lost on PostgreSQL: vE ends as "Chrome on Linux · e5", not
  // chosen, without its user. Once the ops of one id are merged as SQLite applies them,
  // this test fails for passing: drop the `.fails`.
  it.runIf(pgHere)("the same volunteer twice in one batch ends so on PostgreSQL too", async () => {
    await sameVolunteerTwice();
    await twiceExpected(engines[1].db, engines[1].kind);
    await expectSameState();
  });

  it("results and their verdicts, in one batch or over several: valid ones paid once, invalid ones not, the quorum's extras unpaid", async () => {
    await user("dave", 100_000);
    await user("erin");
    const u = (i: number) => unitOf("jVal", i);
    const erin = userAccount("erin");
    await write([submitOp("jVal", "dave", [1000, 1000, 1000, 1000])]);
    const hellos = [volunteerOp("val1"), volunteerOp("val2"), volunteerOp("val3"), volunteerOp("val4", { userId: "erin" })];
    const batch4: PersistOp[] = [resultOp(u(1), "val2", { sum: 11 }), validatedOp(u(1), { sum: 11 }, [ref(u(1), "val1", 1000), ref(u(1), "val2", 1000)], [ref(u(1), "val3", 0)])];
    await write(
      // Received and decided in one batch.
      [...hellos, resultOp(u(0), "val1", { sum: 10 }), resultOp(u(0), "val2", { sum: 10 }), validatedOp(u(0), { sum: 10 }, [ref(u(0), "val1", 1000), ref(u(0), "val2", 1000)])],
      // Received now, decided later (one of the two disagrees).
      [resultOp(u(1), "val1", { sum: 11 }), resultOp(u(1), "val3", { sum: 99 })],
      batch4,
    );
    await each(async (db, on) => {
      expect(await verdictsOf(db, "jVal"), on).toEqual({
        "jVal.0~val1": "valid 1000", "jVal.0~val2": "valid 1000", "jVal.1~val1": "valid 1000", "jVal.1~val2": "valid 1000", "jVal.1~val3": "invalid 0",
      });
    });
    await write(
      [
        // Unit 1 again (a replayed decision): not paid twice.
        validatedOp(u(1), { sum: 11 }, [ref(u(1), "val2", 1000), ref(u(1), "val1", 1000)]),
        // A third agreeing result beyond the quorum of 2 counts, unpaid; the decision twice in one batch pays once.
        resultOp(u(2), "val4", { sum: 12 }, erin), resultOp(u(2), "val1", { sum: 12 }), resultOp(u(2), "val3", { sum: 12 }),
        validatedOp(u(2), { sum: 12 }, [ref(u(2), "val4", 1000, erin), ref(u(2), "val1", 1000), ref(u(2), "val3", 0)]),
        validatedOp(u(2), { sum: 12 }, [ref(u(2), "val4", 1000, erin), ref(u(2), "val1", 1000), ref(u(2), "val3", 0)]),
      ],
      // The whole of an earlier batch once more (a commit retried after a crash).
      batch4,
    );
    await each(async (db, on) => {
      expect(await verdictsOf(db, "jVal"), on).toEqual({
        "jVal.0~val1": "valid 1000", "jVal.0~val2": "valid 1000",
        "jVal.1~val1": "valid 1000", "jVal.1~val2": "valid 1000", "jVal.1~val3": "invalid 0",
        "jVal.2~val1": "valid 1000", "jVal.2~val3": "valid 0", "jVal.2~val4": "valid 1000",
      });
      expect(await unitsOf(db, "jVal"), on).toEqual([
        { done: true, output: '{"sum":10}', volunteerId: "val1", completed: true },
        { done: true, output: '{"sum":11}', volunteerId: "val1", completed: true },
        { done: true, output: '{"sum":12}', volunteerId: "val4", completed: true },
        { done: false, output: null, volunteerId: null, completed: false },
      ]);
      expect(await jobOf(db, "jVal"), on).toEqual({ state: "running", unitsDone: 3, cost: 6000, error: null, result: null, finished: false });
      expect(await balance(db, escrowAccount("jVal")), on).toBe(2000);
      expect(await balance(db, anonAccount("val1")), on).toBe(3000);
      expect(await balance(db, anonAccount("val2")), on).toBe(2000);
      expect(await balance(db, anonAccount("val3")), on).toBe(0);
      expect(await balance(db, erin), on).toBe(1000);
      expect(await balance(db, anonAccount("val4")), on).toBe(0);
      expect(await volunteerOf(db, "val1"), on).toMatchObject({ tasksDone: 3, earned: 3000 });
      expect(await volunteerOf(db, "val2"), on).toMatchObject({ tasksDone: 2, earned: 2000 });
      expect(await volunteerOf(db, "val3"), on).toMatchObject({ tasksDone: 1, earned: 0 });
      expect(await volunteerOf(db, "val4"), on).toMatchObject({ tasksDone: 1, earned: 1000 });
      // One payout per batch that decided something, none for the replays.
      expect((await transactions(db, "jVal", "payout")).map((t) => JSON.stringify(t)).sort(), on).toEqual([
        { "anon:val1": 1000, "anon:val2": 1000, "escrow:jVal": -2000 },
        { "anon:val1": 1000, "anon:val2": 1000, "escrow:jVal": -2000 },
        { "anon:val1": 1000, "escrow:jVal": -2000, "user:erin": 1000 },
      ].map((t) => JSON.stringify(t)).sort());
      const stored = await db.result.findUniqueOrThrow({ where: { id: "jVal.0~val1" } });
      expect(stored, on).toMatchObject({
        volunteerId: "val1", accountId: "anon:val1", output: '{"sum":10}', digest: sha256('{"sum":10}'), error: null, turnaroundMs: 1234, cpuMs: 813,
        workMs: 812.6 * 1.25,
      });
      expect(await hotStore(db).unitOutputs("jVal"), on).toEqual([
        { output: '{"sum":10}', done: true }, { output: '{"sum":11}', done: true }, { output: '{"sum":12}', done: true }, { output: null, done: false },
      ]);
    });
    await expectSameState();
  });

  it("a job's outputs are read in unit order across pages, every unit once", async () => {
    await user("paige", 10_000_000);
    const n = OUTPUT_PAGE * 2 + 5;
    await write([submitOp("jPages", "paige", Array.from({ length: n }, () => 1))]);
    // Every third unit validated, each with an output of its own (set directly: the reads are under test).
    await each(async (db) => {
      await db.$executeRawUnsafe(`UPDATE "WorkUnit" SET "done" = ("idx" % 3 = 0), "output" = CASE WHEN "idx" % 3 = 0 THEN '{"i":' || "idx" || '}' END WHERE "jobId" = 'jPages'`);
    });
    const expected = Array.from({ length: n }, (_, idx) => (idx % 3 ? { output: null, done: false } : { output: `{"i":${idx}}`, done: true }));
    await each(async (db, on) => {
      expect(await hotStore(db).unitOutputs("jPages"), on).toEqual(expected);
    });
  });

  it("a payout never overdraws the job's escrow: the last valid results are paid what is left", async () => {
    await user("frank", 10_000);
    const u = (i: number) => unitOf("jCap", i);
    // An escrow short of what its units pay, as one a backtrack's reversal left short.
    await write([submitOp("jCap", "frank", [800, 800, 800], { estimate: 1000 })]);
    await write(
      [volunteerOp("cap1"), volunteerOp("cap2"), resultOp(u(0), "cap1", 1), resultOp(u(0), "cap2", 1), validatedOp(u(0), 1, [ref(u(0), "cap1", 800), ref(u(0), "cap2", 800)])],
      [resultOp(u(1), "cap1", 2), resultOp(u(1), "cap2", 2), validatedOp(u(1), 2, [ref(u(1), "cap1", 800), ref(u(1), "cap2", 800)])],
      [finishOp("jCap", "failed", { error: "out of credit" })],
    );
    await each(async (db, on) => {
      expect(await verdictsOf(db, "jCap"), on).toEqual({ "jCap.0~cap1": "valid 800", "jCap.0~cap2": "valid 200", "jCap.1~cap1": "valid 0", "jCap.1~cap2": "valid 0" });
      expect(await jobOf(db, "jCap"), on).toEqual({ state: "failed", unitsDone: 2, cost: 1000, error: "out of credit", result: null, finished: true });
      expect(await balance(db, escrowAccount("jCap")), on).toBe(0);
      expect(await volunteerOf(db, "cap1"), on).toMatchObject({ tasksDone: 2, earned: 800 });
      expect(await volunteerOf(db, "cap2"), on).toMatchObject({ tasksDone: 2, earned: 200 });
      // Nothing was left to pay or to refund: no empty transactions.
      expect(await transactions(db, "jCap", "payout"), on).toEqual([{ "anon:cap1": 800, "anon:cap2": 200, "escrow:jCap": -1000 }]);
      expect(await transactions(db, "jCap", "refund"), on).toEqual([]);
      expect(await balance(db, userAccount("frank")), on).toBe(9000);
    });
    await expectSameState();
  });

  it("error results are stored unpaid; a failed job's waiting results become unneeded and its escrow goes back", async () => {
    await user("gina", 5000);
    const u = (i: number) => unitOf("jErr", i);
    await write([submitOp("jErr", "gina", [300, 300])]);
    await write(
      [
        errorOp(u(0), "err1", "kernel threw: boom"), errorOp(u(0), "err2", "time limit exceeded"),
        { type: "reliability", rows: [reliabilityRow("host:err1", [0, 0], { errors: 1 }), reliabilityRow("host:err2", [0, 0], { errors: 1 })] },
      ],
      [resultOp(u(1), "err1", 7), finishOp("jErr", "failed", { error: "unit 0 failed 3 times: kernel threw: boom" })],
      // An error reported after the job ended is still recorded.
      [errorOp(u(1), "err2", "time limit exceeded")],
    );
    await each(async (db, on) => {
      expect(await verdictsOf(db, "jErr"), on).toEqual({ "jErr.0~err1": "error 0", "jErr.0~err2": "error 0", "jErr.1~err1": "unneeded 0", "jErr.1~err2": "error 0" });
      expect(await db.result.findUniqueOrThrow({ where: { id: "jErr.0~err1" } }), on).toMatchObject({ error: "kernel threw: boom", output: null, digest: null, turnaroundMs: 0 });
      expect((await db.result.findUniqueOrThrow({ where: { id: "jErr.0~err1" } })).decidedAt, on).not.toBeNull();
      expect(await jobOf(db, "jErr"), on).toEqual({ state: "failed", unitsDone: 0, cost: 0, error: "unit 0 failed 3 times: kernel threw: boom", result: null, finished: true });
      expect(await transactions(db, "jErr", "refund"), on).toEqual([{ "escrow:jErr": -1200, "user:gina": 1200 }]);
      expect(await balance(db, userAccount("gina")), on).toBe(5000);
      expect(await db.reliability.findUniqueOrThrow({ where: { id: "host:err1" } }), on).toMatchObject({ errors: 1, valid: 0 });
    });
    await expectSameState();
  });

  it("reliability rows: counters add up over rows and batches, streaks are the last written, a ban only ever extends", async () => {
    const T = Date.parse("2030-01-01T00:00:00.000Z");
    const at = (hours: number) => new Date(T + hours * 3600_000);
    const rel = (rows: ReliabilityWrite[]): PersistOp[] => [{ type: "reliability", rows }];
    const host = "host:rel1";
    const account = anonAccount("rel1");
    const expectRow = async (id: string, want: Record<string, unknown>) =>
      each(async (db, on) => expect(await db.reliability.findUniqueOrThrow({ where: { id } }), `${id} on ${on}`).toMatchObject(want));

    await write(rel([reliabilityRow(host, [3, 0], { valid: 3, turnaroundMsTotal: 3000.5, turnaroundCount: 3, spotChecks: 1 })]));
    // One id twice in one batch (two verdicts in one commit): increments summed, the later streaks.
    await write(rel([
      reliabilityRow(host, [4, 0], { valid: 1, turnaroundMsTotal: 100, turnaroundCount: 1 }),
      reliabilityRow(host, [0, 1], { invalid: 1, errors: 1, turnaroundMsTotal: 200.25, turnaroundCount: 1 }),
      reliabilityRow(account, [0, 1], { invalid: 1 }),
    ]));
    await expectRow(host, { consecutiveValid: 0, consecutiveInvalid: 1, valid: 4, invalid: 1, errors: 1, turnaroundMsTotal: 3300.75, turnaroundCount: 5, spotChecks: 1, bannedUntil: null, banReason: null });
    await write(rel([reliabilityRow(host, [0, 2], { invalid: 1 }, [at(1), "2 invalid results in a row"])]));
    await expectRow(host, { invalid: 2, bannedUntil: at(1), banReason: "2 invalid results in a row" });
    // An earlier ban, then none: neither shortens the one in force.
    await write(rel([reliabilityRow(host, [0, 3], { invalid: 1 }, [at(0.5), "an earlier ban"])]));
    await expectRow(host, { consecutiveInvalid: 3, invalid: 3, bannedUntil: at(1), banReason: "2 invalid results in a row" });
    await write(rel([reliabilityRow(host, [1, 0], { valid: 1 })]));
    await expectRow(host, { consecutiveValid: 1, consecutiveInvalid: 0, valid: 5, bannedUntil: at(1), banReason: "2 invalid results in a row" });
    // A later one extends it.
    await write(rel([reliabilityRow(host, [0, 1], { invalid: 1 }, [at(2), "caught again"]), reliabilityRow(account, [0, 2], { invalid: 1 }, [at(3), "account banned"])]));
    await expectRow(host, {
      consecutiveValid: 0, consecutiveInvalid: 1, valid: 5, invalid: 4, errors: 1, turnaroundMsTotal: 3300.75, turnaroundCount: 5, spotChecks: 1,
      bannedUntil: at(2), banReason: "caught again",
    });
    await expectRow(account, { consecutiveInvalid: 2, invalid: 2, bannedUntil: at(3), banReason: "account banned" });

    // A ban an admin wrote through Prisma is not shortened by the batch's earlier one either.
    await each(async (db) => {
      await db.reliability.create({ data: { id: "host:rel2", bannedUntil: at(5), banReason: "banned by an admin" } });
    });
    await write(rel([reliabilityRow("host:rel2", [0, 1], { invalid: 1 }, [at(4), "2 invalid results in a row"])]));
    await expectRow("host:rel2", { invalid: 1, bannedUntil: at(5), banReason: "banned by an admin" });
    await write(rel([reliabilityRow("host:rel2", [0, 2], { invalid: 1 }, [at(6), "3 invalid results in a row"])]));
    await expectRow("host:rel2", { invalid: 2, bannedUntil: at(6), banReason: "3 invalid results in a row" });

    // The hot path's read of them is the same on both.
    const read = await Promise.all(engines.map(async (e) => byId(await hotStore(e.db).reliabilityRows([host, account, "host:rel2", "host:nobody"]))));
    expect(read[0].map((r) => [r.id, r.valid, r.invalid, r.bannedUntil?.toISOString()]), "reliabilityRows").toEqual([
      [account, 0, 2, at(3).toISOString()], ["host:rel1", 5, 4, at(2).toISOString()], ["host:rel2", 0, 2, at(6).toISOString()],
    ]);
    if (read.length > 1) expect(read[1], "reliabilityRows: PostgreSQL against SQLite").toEqual(read[0]);
    await expectSameState();
  });

  it("a job that ends returns its unused escrow once, however many times its end is written; later verdicts pay nothing", async () => {
    await user("hank", 50_000);
    const u = (i: number) => unitOf("jFin", i);
    await write([submitOp("jFin", "hank", [1000, 1000, 1000])]);
    await write(
      // Adaptive replication: a trusted host's result decides unit 0 alone (half of its hold unused).
      [volunteerOp("fin1"), volunteerOp("fin2"), volunteerOp("fin3"), resultOp(u(0), "fin1", 0), validatedOp(u(0), 0, [ref(u(0), "fin1", 1000)])],
      [resultOp(u(1), "fin1", 1), resultOp(u(1), "fin2", 1), validatedOp(u(1), 1, [ref(u(1), "fin1", 1000), ref(u(1), "fin2", 1000)])],
      // The last verdict and the job's end in one commit, the end written twice; a replica still out is unneeded.
      [
        resultOp(u(2), "fin2", 2), resultOp(u(2), "fin3", 2), validatedOp(u(2), 2, [ref(u(2), "fin2", 1000)]),
        finishOp("jFin", "completed", { result: "[0,1,2]" }), finishOp("jFin", "completed", { result: "[0,1,2]" }),
      ],
      [finishOp("jFin", "completed", { result: "[0,1,2]" })],
      [finishOp("jFin", "failed", { error: "too late" })],
    );
    await each(async (db, on) => {
      expect(await jobOf(db, "jFin"), on).toEqual({ state: "completed", unitsDone: 3, cost: 4000, error: null, result: "[0,1,2]", finished: true });
      expect(await verdictsOf(db, "jFin"), on).toEqual({
        "jFin.0~fin1": "valid 1000", "jFin.1~fin1": "valid 1000", "jFin.1~fin2": "valid 1000", "jFin.2~fin2": "valid 1000", "jFin.2~fin3": "unneeded 0",
      });
      expect(await transactions(db, "jFin", "refund"), on).toEqual([{ "escrow:jFin": -2000, "user:hank": 2000 }]);
      expect(await balance(db, escrowAccount("jFin")), on).toBe(0);
      expect(await balance(db, userAccount("hank")), on).toBe(50_000 - 6000 + 2000);
    });

    const c = (i: number) => unitOf("jCancel", i);
    await write([submitOp("jCancel", "hank", [1000, 1000, 1000], { quorum: 1 })]);
    await write(
      [resultOp(c(0), "fin1", 0), validatedOp(c(0), 0, [ref(c(0), "fin1", 1000)])],
      [finishOp("jCancel", "cancelled", { error: "cancelled by its owner" })],
      // A verdict that arrives after the job ended: its unit stays open and nobody is paid.
      [resultOp(c(1), "fin1", 1), validatedOp(c(1), 1, [ref(c(1), "fin1", 1000)]), finishOp("jCancel", "failed", { error: "too late" })],
    );
    await each(async (db, on) => {
      expect(await jobOf(db, "jCancel"), on).toEqual({ state: "cancelled", unitsDone: 1, cost: 1000, error: "cancelled by its owner", result: null, finished: true });
      expect(await verdictsOf(db, "jCancel"), on).toEqual({ "jCancel.0~fin1": "valid 1000", "jCancel.1~fin1": "pending 0" });
      expect((await unitsOf(db, "jCancel")).map((x) => x.done), on).toEqual([true, false, false]);
      expect(await transactions(db, "jCancel", "refund"), on).toEqual([{ "escrow:jCancel": -2000, "user:hank": 2000 }]);
      expect(await transactions(db, "jCancel", "payout"), on).toEqual([{ "anon:fin1": 1000, "escrow:jCancel": -1000 }]);
      expect(await balance(db, escrowAccount("jCancel")), on).toBe(0);
      expect(await balance(db, userAccount("hank")), on).toBe(50_000 - 6000 + 2000 - 3000 + 2000);
      expect(await volunteerOf(db, "fin1"), on).toMatchObject({ tasksDone: 3, earned: 3000 });
    });
    await expectSameState();
  });

  it("a backtrack invalidates the caught host's results, reopens the units it decided and reverses payouts, never below zero", async () => {
    await user("ivan", 100_000);
    await user("mallory");
    const mal = userAccount("mallory");
    const d = (i: number) => unitOf("jDone", i);
    const r = (i: number) => unitOf("jRun", i);
    const f = (i: number) => unitOf("jFail", i);
    await write([submitOp("jDone", "ivan", [1000, 1000, 1000])], [submitOp("jRun", "ivan", [500, 500])], [submitOp("jFail", "ivan", [700])]);
    await write(
      [volunteerOp("mal", { userId: "mallory", name: "mallory's box", nameChosen: true }), volunteerOp("bt1"), volunteerOp("bt2"), volunteerOp("bt3")],
      // A completed job the cheater helped decide two units of.
      [
        resultOp(d(0), "mal", 0, mal), resultOp(d(0), "bt1", 0), resultOp(d(1), "mal", 1, mal), resultOp(d(1), "bt2", 1), resultOp(d(2), "bt1", 2), resultOp(d(2), "bt2", 2),
        validatedOp(d(0), 0, [ref(d(0), "mal", 1000, mal), ref(d(0), "bt1", 1000)]),
        validatedOp(d(1), 1, [ref(d(1), "mal", 1000, mal), ref(d(1), "bt2", 1000)]),
        validatedOp(d(2), 2, [ref(d(2), "bt1", 1000), ref(d(2), "bt2", 1000)]),
      ],
      [finishOp("jDone", "completed", { result: "[0,1,2]" })],
      // A running job: one unit decided with the cheater, one of its results waiting.
      [resultOp(r(0), "bt1", 0), resultOp(r(0), "mal", 0, mal), validatedOp(r(0), 0, [ref(r(0), "bt1", 500), ref(r(0), "mal", 500, mal)]), resultOp(r(1), "mal", 1, mal)],
      // A failed job the cheater was paid by.
      [resultOp(f(0), "mal", 0, mal), resultOp(f(0), "bt3", 0), validatedOp(f(0), 0, [ref(f(0), "mal", 700, mal), ref(f(0), "bt3", 700)])],
      [finishOp("jFail", "failed", { error: "the owner's program crashed" })],
    );
    // The cheater spends most of what it was paid before it is caught.
    await write([submitOp("jMal", "mallory", [1250])]);
    await each(async (db, on) => {
      expect(await balance(db, mal), on).toBe(3200 - 2500);
      expect(await jobOf(db, "jDone"), on).toMatchObject({ state: "completed", unitsDone: 3, cost: 6000 });
    });

    const caught: PersistOp = { type: "backtrack", host: "mal", account: mal, reason: "failed a spot check" };
    await write([caught]);
    await each(async (db, on) => {
      expect(await verdictsOf(db, "jDone"), on).toEqual({
        "jDone.0~bt1": "pending 0", "jDone.0~mal": "invalid 0", "jDone.1~bt2": "pending 0", "jDone.1~mal": "invalid 0", "jDone.2~bt1": "valid 1000", "jDone.2~bt2": "valid 1000",
      });
      expect(await verdictsOf(db, "jRun"), on).toEqual({ "jRun.0~bt1": "pending 0", "jRun.0~mal": "invalid 0", "jRun.1~mal": "invalid 0" });
      expect(await verdictsOf(db, "jFail"), on).toEqual({ "jFail.0~bt3": "valid 700", "jFail.0~mal": "invalid 0" });
      expect((await db.result.findUniqueOrThrow({ where: { id: "jRun.1~mal" } })).error, on).toBe("backtracked: failed a spot check");
      expect((await db.result.findUniqueOrThrow({ where: { id: "jDone.0~bt1" } })).decidedAt, on).toBeNull();
      // The completed job runs again, without its result; the running one loses its decided unit.
      expect(await jobOf(db, "jDone"), on).toEqual({ state: "running", unitsDone: 1, cost: 6000 - 2700, error: null, result: null, finished: false });
      expect((await unitsOf(db, "jDone")).map((x) => [x.done, x.output, x.volunteerId]), on).toEqual([[false, null, null], [false, null, null], [true, "2", "bt1"]]);
      expect(await jobOf(db, "jRun"), on).toEqual({ state: "running", unitsDone: 0, cost: 500, error: null, result: null, finished: false });
      // A failed job is not reopened: what the cheater was paid would go back to its owner (it had nothing left).
      expect(await jobOf(db, "jFail"), on).toEqual({ state: "failed", unitsDone: 1, cost: 1400, error: "the owner's program crashed", result: null, finished: true });
      // 700 of the cheater's 1000 + 1000 + 500 + 700 could be taken back; all of its partners' 2500.
      expect(await transactions(db, "jDone", "reversal"), on).toEqual([{ "anon:bt1": -1000, "anon:bt2": -1000, "escrow:jDone": 2700, "user:mallory": -700 }]);
      expect(await transactions(db, "jRun", "reversal"), on).toEqual([{ "anon:bt1": -500, "escrow:jRun": 500 }]);
      expect(await transactions(db, "jFail", "reversal"), on).toEqual([]);
      expect(await balance(db, mal), on).toBe(0);
      expect(await balance(db, anonAccount("bt1")), on).toBe(1000);
      expect(await balance(db, anonAccount("bt2")), on).toBe(1000);
      expect(await balance(db, anonAccount("bt3")), on).toBe(700);
      expect(await balance(db, escrowAccount("jDone")), on).toBe(2700);
      expect(await balance(db, escrowAccount("jRun")), on).toBe(1500);
      expect(await balance(db, userAccount("ivan")), on).toBe(100_000 - 6000 - 2000 - 1400);
      expect(await volunteerOf(db, "mal"), on).toMatchObject({ tasksDone: 4, earned: 3200 - 700 });
      expect(await volunteerOf(db, "bt1"), on).toMatchObject({ tasksDone: 3, earned: 1000 });
      expect(await volunteerOf(db, "bt2"), on).toMatchObject({ tasksDone: 2, earned: 1000 });
    });
    await expectSameState();

    // Caught twice: nothing is left to undo.
    const before = await Promise.all(engines.map((e) => snapshot(e.db)));
    await write([caught]);
    for (const [i, e] of engines.entries()) expect(await snapshot(e.db), `a second backtrack changed ${e.kind}`).toEqual(before[i]);

    // The reopened units are decided again by honest hosts and paid out of what the reversal put back.
    await write(
      [
        resultOp(d(0), "bt3", 0), resultOp(d(1), "bt3", 1), resultOp(r(0), "bt2", 0),
        validatedOp(d(0), 0, [ref(d(0), "bt1", 1000), ref(d(0), "bt3", 1000)]),
        validatedOp(d(1), 1, [ref(d(1), "bt2", 1000), ref(d(1), "bt3", 1000)]),
        validatedOp(r(0), 0, [ref(r(0), "bt1", 500), ref(r(0), "bt2", 500)]),
      ],
      [finishOp("jDone", "completed", { result: "[0,1,2]" })],
    );
    await each(async (db, on) => {
      expect(await verdictsOf(db, "jDone"), on).toMatchObject({ "jDone.0~bt1": "valid 1000", "jDone.0~bt3": "valid 1000", "jDone.1~bt2": "valid 700", "jDone.1~bt3": "valid 0" });
      expect(await jobOf(db, "jDone"), on).toEqual({ state: "completed", unitsDone: 3, cost: 6000, error: null, result: "[0,1,2]", finished: true });
      expect(await jobOf(db, "jRun"), on).toMatchObject({ state: "running", unitsDone: 1, cost: 1500 });
      expect(await balance(db, escrowAccount("jDone")), on).toBe(0);
      expect(await transactions(db, "jDone", "refund"), on).toEqual([]);
      expect(await balance(db, escrowAccount("jRun")), on).toBe(500);
      expect(await balance(db, anonAccount("bt1")), on).toBe(2500);
      expect(await balance(db, anonAccount("bt2")), on).toBe(2200);
      expect(await balance(db, anonAccount("bt3")), on).toBe(1700);
    });
    await expectSameState();
  });

  it("a backtrack leaves a completed program job whose inputs were collected as it is, and pays its owner back", async () => {
    await user("olga", 100_000);
    await user("mel");
    const mel = userAccount("mel");
    const p = (i: number) => unitOf("jProg", i);
    const hash = "c".repeat(64);
    await each(async (db) => {
      await db.program.create({ data: { hash, name: "p.js", kind: "js", size: 1, ownerId: "olga", exports: "[\"run\"]" } });
    });
    const op = submitOp("jProg", "olga", [1000, 1000]) as Extract<PersistOp, { type: "submit" }>;
    await write([{ ...op, job: { ...op.job, programHash: hash, inputMode: "json", inputBytes: 40 } }]);
    await write(
      [volunteerOp("melBox", { userId: "mel" }), volunteerOp("pb1")],
      [
        resultOp(p(0), "melBox", 0, mel), resultOp(p(0), "pb1", 0), resultOp(p(1), "melBox", 1, mel), resultOp(p(1), "pb1", 1),
        validatedOp(p(0), 0, [ref(p(0), "melBox", 1000, mel), ref(p(0), "pb1", 1000)]),
        validatedOp(p(1), 1, [ref(p(1), "melBox", 1000, mel), ref(p(1), "pb1", 1000)]),
      ],
      [finishOp("jProg", "completed", { result: "[0,1]" })],
    );
    // A day on, its inputs were collected (files.ts): it could not run again.
    await each(async (db) => {
      await db.job.update({ where: { id: "jProg" }, data: { inputBytes: 0 } });
    });
    await write([{ type: "backtrack", host: "melBox", account: mel, reason: "failed a ringer" }]);
    await each(async (db, on) => {
      expect(await verdictsOf(db, "jProg"), on).toEqual({ "jProg.0~melBox": "invalid 0", "jProg.0~pb1": "valid 1000", "jProg.1~melBox": "invalid 0", "jProg.1~pb1": "valid 1000" });
      expect(await jobOf(db, "jProg"), on).toMatchObject({ state: "completed", unitsDone: 2, result: "[0,1]", finished: true });
      expect(await transactions(db, "jProg", "reversal"), on).toEqual([{ "user:mel": -2000, "user:olga": 2000 }]);
    });
    await expectSameState();
  });

  it("a backtrack whose cheater cannot repay it all takes what is left in the same order on both", async () => {
    await user("olga", 10_000);
    await user("trent");
    const acc = userAccount("trent");
    const a = unitOf("jOrderB", 0);
    const b = unitOf("jOrderA", 0);
    await write([submitOp("jOrderB", "olga", [1000], { quorum: 1 })], [submitOp("jOrderA", "olga", [1000], { quorum: 1 })]);
    // Paid by the job whose id sorts last first, so the order results were written in is not their ids' order.
    await write(
      [volunteerOp("trentBox", { userId: "trent" }), resultOp(a, "trentBox", 0, acc), validatedOp(a, 0, [ref(a, "trentBox", 1000, acc)])],
      [resultOp(b, "trentBox", 0, acc), validatedOp(b, 0, [ref(b, "trentBox", 1000, acc)])],
      [submitOp("jTrent", "trent", [750], { quorum: 2 })],
    );
    await each(async (db, on) => expect(await balance(db, acc), on).toBe(500));
    await write([{ type: "backtrack", host: "trentBox", account: acc, reason: "wrong sums" }]);
    await each(async (db, on) => {
      expect(await balance(db, acc), on).toBe(0);
      // The caught host's results are taken in id order: jOrderA's payout is reversed first, and gets what is left.
      expect(await jobOf(db, "jOrderA"), on).toMatchObject({ state: "running", unitsDone: 0, cost: 500 });
      expect(await jobOf(db, "jOrderB"), on).toMatchObject({ state: "running", unitsDone: 0, cost: 1000 });
      expect(await balance(db, escrowAccount("jOrderA")), on).toBe(500);
      expect(await balance(db, escrowAccount("jOrderB")), on).toBe(0);
      expect(await transactions(db, "jOrderA", "reversal"), on).toEqual([{ "escrow:jOrderA": 500, "user:trent": -500 }]);
      expect(await transactions(db, "jOrderB", "reversal"), on).toEqual([]);
    });
    await expectSameState();
  });

  it("a seeded random sequence of a few hundred ops over three jobs", async () => {
    const rand = seededRandom(20261203);
    const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
    await user("rOwnerA", 200_000);
    await user("rOwnerB", 200_000);
    await user("rUser1", 10_000);
    await user("rUser2");
    const hosts = Array.from({ length: 8 }, (_, i) => `rv${i}`);
    const userOf: Record<string, string> = { rv6: "rUser1", rv7: "rUser2" };
    const accountOf = (h: string) => (userOf[h] ? userAccount(userOf[h]) : anonAccount(h));
    interface RJob { id: string; owner: string; quorum: number; pays: number[]; results: Map<number, Array<{ host: string; output: unknown }>> }
    const jobs: RJob[] = [];
    const submitRandom = (id: string, owner: string, units: number, quorum: number, share: number): PersistOp => {
      const pays = Array.from({ length: units }, () => int(100, 2000));
      jobs.push({ id, owner, quorum, pays, results: new Map() });
      return submitOp(id, owner, pays, { quorum, estimate: Math.round(pays.reduce((s, p) => s + p, 0) * quorum * share) });
    };
    await write([submitRandom("rJ1", "rOwnerA", 12, 2, 1)], [submitRandom("rJ2", "rOwnerB", 8, 1, 0.7)], hosts.map((h) => volunteerOp(h, { userId: userOf[h] ?? null })));
    const banned = new Set<string>();
    const T = Date.parse("2030-06-01T00:00:00.000Z");
    let seq = 0;
    const counts: Record<string, number> = {};
    let written = 0;

    const randomOp = (inBatch: Set<string>): PersistOp | undefined => {
      seq++;
      const x = rand();
      const job = pick(jobs);
      const idx = int(0, job.pays.length - 1);
      const unitId = unitOf(job.id, idx);
      const onUnit = job.results.get(idx) ?? job.results.set(idx, []).get(idx)!;
      if (x < 0.4) {
        const free = hosts.filter((h) => !banned.has(h) && !onUnit.some((r) => r.host === h));
        if (!free.length) return undefined;
        const host = pick(free);
        const output = rand() < 0.8 ? { u: idx } : { u: idx, wrong: host };
        onUnit.push({ host, output });
        return resultOp(unitId, host, output, accountOf(host));
      }
      if (x < 0.65) {
        const honest = onUnit.filter((r) => !banned.has(r.host));
        if (!honest.length) return undefined;
        const votes = new Map<string, typeof honest>();
        for (const r of honest) (votes.get(JSON.stringify(r.output)) ?? votes.set(JSON.stringify(r.output), []).get(JSON.stringify(r.output))!).push(r);
        const [winner, valid] = [...votes].sort((p, q) => q[1].length - p[1].length)[0];
        let unpaid = job.quorum;
        const owner = userAccount(job.owner);
        return validatedOp(
          unitId, JSON.parse(winner),
          valid.map((r) => ref(unitId, r.host, accountOf(r.host) !== owner && unpaid > 0 ? (unpaid--, job.pays[idx]) : 0, accountOf(r.host))),
          honest.filter((r) => !valid.includes(r)).map((r) => ref(unitId, r.host, 0, accountOf(r.host))),
        );
      }
      if (x < 0.7) {
        const host = pick(hosts);
        return errorOp(unitId, host, `kernel threw: error ${seq}`, `${unitId}~${host}~e${seq}`);
      }
      if (x < 0.82) {
        return {
          type: "reliability",
          rows: Array.from({ length: int(1, 3) }, () => reliabilityRow(
            rand() < 0.7 ? `host:${pick(hosts)}` : accountOf(pick(hosts)), [int(0, 5), int(0, 3)],
            { valid: int(0, 3), invalid: int(0, 1), errors: int(0, 1), turnaroundMsTotal: int(0, 5000) + 0.5, turnaroundCount: int(0, 3), spotChecks: int(0, 1) },
            rand() < 0.2 ? [new Date(T + int(0, 96) * 3600_000), `ban ${seq}`] : null,
          )),
        };
      }
      if (x < 0.93) {
        const free = hosts.filter((h) => !inBatch.has(h));
        if (!free.length) return undefined;
        const host = pick(free);
        inBatch.add(host);
        const chosen = rand() < 0.3;
        return volunteerOp(host, {
          name: chosen ? `${host}'s pick ${seq}` : `Chrome on Linux · ${host}`, nameChosen: chosen,
          userId: userOf[host] && rand() < 0.5 ? userOf[host] : null, benchmark: int(50, 200) / 100,
        });
      }
      // Jobs end late in the sequence (and again after a backtrack reopened them); two hosts at most are caught.
      if (x < 0.985) {
        if (written < 160) return undefined;
        const state = pick(["completed", "completed", "failed", "cancelled"] as const);
        return finishOp(job.id, state, state === "completed" ? { result: JSON.stringify({ seq }) } : { error: `ended at ${seq}` });
      }
      if (written < 60 || banned.size >= 2) return undefined;
      const host = pick(hosts.filter((h) => !banned.has(h)));
      banned.add(host);
      return { type: "backtrack", host, account: accountOf(host), reason: `caught at ${seq}` };
    };

    let batches = 0;
    let last: PersistOp[] = [];
    const lateSubmits: string[] = [];
    let replays = 0;
    while (written < 320) {
      if (batches === 20 || batches === 25) {
        // A submit in the middle, which its owner may or may not afford (the same on both).
        const op = batches === 20 ? submitRandom("rJ3", "rUser1", 3, 1, 1) : submitRandom("rJ4", "rUser2", 3, 2, 1);
        const outcomes = await Promise.all(engines.map((e) => hotStore(e.db).write([op]).then(() => "written", (err: Error) => err.name)));
        expect(new Set(outcomes).size, `a late submit: ${outcomes.join(" / ")}`).toBe(1);
        lateSubmits.push(outcomes[0]);
        if (outcomes[0] !== "written") jobs.pop();
      }
      // The last batch again now and then, as a commit retried after a crash.
      if (last.length && rand() < 0.06) {
        await write(last);
        replays++;
      }
      const inBatch = new Set<string>();
      const batch: PersistOp[] = [];
      for (let n = int(1, 10); batch.length < n; ) {
        const op = randomOp(inBatch);
        if (op) batch.push(op);
      }
      for (const op of batch) counts[op.type] = (counts[op.type] ?? 0) + 1;
      await write(batch);
      written += batch.length;
      last = batch;
      if (++batches % 10 === 0) await expectSameState();
    }
    await expectSameState();

    // The sequence did exercise what it is meant to.
    expect(counts.backtrack, "backtracks").toBe(2);
    expect(counts.finish, "finishes").toBeGreaterThanOrEqual(3);
    expect(lateSubmits, "rUser1 can afford its job, rUser2 cannot").toEqual(["written", "InsufficientCredits"]);
    expect(replays, "batches written twice").toBeGreaterThan(0);
    await each(async (db, on) => {
      const states = await db.result.groupBy({ by: ["state"], where: { jobId: { in: jobs.map((j) => j.id) } }, _count: { _all: true } });
      const byState = Object.fromEntries(states.map((s) => [s.state, s._count._all]));
      expect(byState.valid, `${on}: valid results`).toBeGreaterThan(10);
      expect(byState.invalid, `${on}: invalid results`).toBeGreaterThan(0);
      expect(byState.error, `${on}: errors`).toBeGreaterThan(0);
      expect(await db.ledgerEntry.count({ where: { kind: "refund", jobId: { in: jobs.map((j) => j.id) } } }), `${on}: refunds`).toBeGreaterThan(0);
      expect(await db.ledgerEntry.count({ where: { kind: "reversal", jobId: { in: jobs.map((j) => j.id) } } }), `${on}: reversals`).toBeGreaterThan(0);
      for (const j of jobs) {
        const row = await db.job.findUniqueOrThrow({ where: { id: j.id } });
        expect(row.unitsDone, `${on}: ${j.id}'s unitsDone`).toBe(await db.workUnit.count({ where: { jobId: j.id, done: true } }));
        expect(await balance(db, escrowAccount(j.id)), `${on}: ${j.id}'s escrow`).toBeGreaterThanOrEqual(0);
        expect(await db.result.count({ where: { jobId: j.id, paid: { gt: 0 }, state: { not: "valid" } } }), `${on}: paid results not valid`).toBe(0);
        expect(await db.result.count({ where: { jobId: j.id, state: "valid", unit: { done: false } } }), `${on}: valid results of open units`).toBe(0);
      }
    });
  });
});
