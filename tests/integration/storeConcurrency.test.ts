import crypto from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { anonAccount, escrowAccount, SYSTEM_GRANTS, userAccount } from "../../server/services/credits/accounts";
import { auditLedger, postTransaction } from "../../server/services/credits/ledger";
import type { PersistOp } from "../../server/services/jobs/batchSql";
import { hotStore } from "../../server/store/hotStore";
import { createPrisma, type Db } from "../../server/store/prisma";
import { postgresDatabase, postgresUnavailable, releaseEngines } from "../helpers/engines";
import type { TestDatabase } from "../helpers/testDb";

// Several coordinators on one PostgreSQL database, each with its own client and pool, commit
// their batches at once (batchPg.ts): verdicts on different units of the same jobs, payouts to
// the same volunteers' accounts, reliability rows of the same hosts, a unit decided by several
// of them at once, and two of them ending the same jobs at the same moment. Every write must go
// through (no deadlock, no overdrawn escrow), and the books must come out as if the batches had
// been written one at a time: each unit paid once, counters that add up, one refund. This runs
// on PostgreSQL whichever engine the run is on (SQLite has a single writer).
//
// Some tests write a failed batch again, as the group commit does, and check that nothing is
// lost or done twice; the "without a deadlock" ones allow no retry at all.

/** Throws (the file fails) on a PostgreSQL run whose server does not answer. */
const pgMissing = await postgresUnavailable();

const WRITERS = 4;
const PAY = 100;

const sha256 = (s: string) => crypto.createHash("sha256").update(s).digest("hex");

/** One statement on the database's server, as its administrator (the test's own database URL is enough here). */
async function admin0(url: string, sql: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function submitOp(jobId: string, ownerId: string, units: number, estimate: number): PersistOp {
  return {
    type: "submit",
    job: {
      id: jobId, ownerId, kernel: "sum", params: "{}", chunks: units, price: 1000, estimate, leaseMs: 30_000, replicas: 2, quorum: 2, maxReplicas: 5,
      adaptive: 1, tolerance: null, programHash: null, inputMode: null, merge: null, timeLimitMs: null,
    },
    units: Array.from({ length: units }, (_, idx) => [`${jobId}.${idx}`, idx, JSON.stringify({ idx }), 1000, PAY] as [string, number, string, number, number]),
    round: 0, roundState: null, ownerAccount: userAccount(ownerId), escrow: escrowAccount(jobId), estimate,
  };
}

const hello = (id: string): PersistOp => ({
  type: "volunteer", id, tokenHash: sha256(`secret of ${id}`), userId: null, name: `Chrome on Linux · ${id}`, benchmark: 1, at: new Date().toISOString(),
});

/** Two agreeing results for a unit, from two hosts, decided in the same batch; `tag` tells one writer's results from another's. */
function decide(jobId: string, idx: number, hosts: [string, string], tag: string): PersistOp[] {
  const unitId = `${jobId}.${idx}`;
  const outputJson = JSON.stringify({ idx });
  const task = (h: string) => `${unitId}~${h}~${tag}`;
  return [
    ...hosts.map((h): PersistOp => ({
      type: "result", taskId: task(h), jobId, unitId, host: h, account: anonAccount(h), outputJson, digest: sha256(outputJson), turnaroundMs: 500,
    })),
    { type: "validated", jobId, unitId, canonicalJson: outputJson, valid: hosts.map((h) => ({ taskId: task(h), host: h, account: anonAccount(h), pay: PAY })), invalid: [] },
  ];
}

const reliability = (hosts: string[]): PersistOp => ({
  type: "reliability",
  rows: [...hosts].reverse().map((h) => ({
    id: `host:${h}`, consecutiveValid: 1, consecutiveInvalid: 0, bannedUntil: null, banReason: null,
    add: { valid: 1, invalid: 0, errors: 0, turnaroundMsTotal: 500, turnaroundCount: 1, spotChecks: 0 },
  })),
});

const finish = (jobId: string): PersistOp => ({ type: "finish", jobId, state: "completed", result: `"${jobId} done"` });

/** What the last committer could not write. */
let lastFailures: string[] = [];

/** Writes batches on the writers' clients; a failed batch is written again up to `retries` times (the group commit retries too). */
function committer(writers: Db[], retries: number) {
  const failures: string[] = (lastFailures = []);
  const retried: string[] = [];
  const reliabilityAdds = new Map<string, number>();
  const commit = async (w: number, ops: PersistOp[], what: string) => {
    for (let attempt = 0; ; attempt++) {
      try {
        await hotStore(writers[w]).write(ops);
        for (const op of ops) if (op.type === "reliability") for (const r of op.rows) reliabilityAdds.set(r.id, (reliabilityAdds.get(r.id) ?? 0) + r.add.valid);
        return;
      } catch (e) {
        const why = `writer ${w}, ${what}: ${(e as Error & { code?: string }).code ?? ""} ${(e as Error).message}`;
        if (attempt >= retries) return void failures.push(why);
        retried.push(why);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  const expectAllWritten = (name: string) => {
    expect(failures, "every batch is written (a deadlock or an overdraft would fail one)").toEqual([]);
    if (retried.length) console.warn(`${name}: ${retried.length} batches written again after: ${[...new Set(retried.map((x) => x.replace(/^.*?: /, "")))].join("; ")}`);
  };
  return { commit, failures, retried, reliabilityAdds, expectAllWritten };
}

interface Campaign {
  /** Prefix of its jobs, owners and hosts. */
  name: string;
  rounds: number;
  /** Each batch also carries a hello (a volunteer row refreshed) of a host that others pay. */
  hellos: boolean;
  /** The two writers that end both jobs end them in opposite orders (otherwise both in id order). */
  oppositeEnds: boolean;
  retries: number;
}

describe.skipIf(!!pgMissing)("several writers committing at once on one PostgreSQL database", () => {
  let target: TestDatabase;
  let admin: Db;
  const writers: Db[] = [];

  beforeAll(async () => {
    target = (await postgresDatabase())!;
    // A deadlock is found after deadlock_timeout (1 s by default): found sooner, a test that
    // meets some still ends in seconds. Only a superuser may change it; otherwise it stays.
    await admin0(target.databaseUrl, `ALTER DATABASE "${new URL(target.databaseUrl).pathname.slice(1)}" SET deadlock_timeout = '100ms'`).catch(() => undefined);
    admin = createPrisma(target.databaseUrl);
    for (let i = 0; i < WRITERS; i++) writers.push(createPrisma(target.databaseUrl));
    // Connected through Prisma too, so that $disconnect ends each client's pool.
    for (const db of [admin, ...writers]) await db.$queryRawUnsafe("SELECT 1");
  });

  afterAll(async () => {
    for (const db of [admin, ...writers]) await db?.$disconnect();
    await target?.remove();
    await releaseEngines();
  });

  async function owner(id: string) {
    await admin.user.create({ data: { id, email: `${id}@example.test`, passwordHash: "x" } });
    await admin.$transaction((tx) => postTransaction(tx, "grant", [{ accountId: SYSTEM_GRANTS, amount: -100_000 }, { accountId: userAccount(id), amount: 100_000 }]));
  }

  /**
   * A job that ended while writers decided its units: it ended once (completed, with one
   * refund of what it did not pay when `refund`), each unit it counts done was paid to one
   * pair of results exactly, its cost is what left its escrow, and its escrow is empty.
   */
  async function expectEndedOnce(jobId: string, estimate: number, o: { refund: boolean; minDone: number }) {
    const row = await admin.job.findUniqueOrThrow({ where: { id: jobId } });
    expect({ state: row.state, result: row.result }, jobId).toEqual({ state: "completed", result: `"${jobId} done"` });
    const units = await admin.workUnit.findMany({ where: { jobId }, select: { id: true, done: true } });
    const results = await admin.result.findMany({ where: { jobId }, select: { unitId: true, state: true, paid: true } });
    const done = new Set(units.filter((u) => u.done).map((u) => u.id));
    expect(row.unitsDone, `${jobId}'s unitsDone`).toBe(done.size);
    expect(done.size, `${jobId}: units decided before it ended`).toBeGreaterThanOrEqual(o.minDone);
    for (const u of units) {
      const valid = results.filter((x) => x.unitId === u.id && x.state === "valid");
      // Decided once: by one writer's pair of results, whatever the others sent for it.
      expect(valid.length, `valid results of ${u.id} (done: ${u.done})`).toBe(u.done ? 2 : 0);
    }
    // Results still waiting when the job ended were settled as unneeded; those that came after it wait for nothing.
    expect(results.filter((x) => done.has(x.unitId) && x.state !== "valid" && x.state !== "unneeded"), `${jobId}: other results of decided units`).toEqual([]);
    expect(results.filter((x) => !done.has(x.unitId) && x.state !== "pending"), `${jobId}: results of units decided after the end`).toEqual([]);
    expect(results.filter((x) => x.paid > 0 && x.state !== "valid"), `${jobId}: paid results not valid`).toEqual([]);
    const paid = results.reduce((s, x) => s + x.paid, 0);
    expect(row.cost, `${jobId}'s cost against its results' pay`).toBe(paid);
    const out = await admin.ledgerEntry.aggregate({ where: { jobId, kind: "payout", accountId: escrowAccount(jobId) }, _sum: { amount: true } });
    expect(-(out._sum.amount ?? 0) || 0, `${jobId}'s payouts out of escrow`).toBe(paid);
    expect(await admin.account.findUniqueOrThrow({ where: { id: escrowAccount(jobId) } }), `${jobId}'s escrow`).toMatchObject({ balance: 0 });
    const refunds = await admin.ledgerEntry.findMany({ where: { jobId, kind: "refund", accountId: escrowAccount(jobId) }, select: { amount: true } });
    expect(refunds, `${jobId}'s refunds`).toEqual(o.refund ? [{ amount: -(estimate - paid) }] : []);
    return { paid, done: done.size };
  }

  /** Each host's counters against its results, and its account against its earnings. */
  async function expectVolunteers(hosts: string[], reliabilityAdds: Map<string, number>) {
    for (const h of hosts) {
      const valid = await admin.result.aggregate({ where: { volunteerId: h, state: "valid" }, _count: { _all: true }, _sum: { paid: true } });
      const v = await admin.volunteer.findUniqueOrThrow({ where: { id: h } });
      expect({ tasksDone: v.tasksDone, earned: v.earned }, h).toEqual({ tasksDone: valid._count._all, earned: valid._sum.paid ?? 0 });
      expect((await admin.account.findUnique({ where: { id: anonAccount(h) } }))?.balance ?? 0, `${h}'s account`).toBe(v.earned);
      expect((await admin.reliability.findUnique({ where: { id: `host:${h}` } }))?.valid ?? 0, `host:${h}'s valid count`).toBe(reliabilityAdds.get(`host:${h}`) ?? 0);
    }
    const audit = await auditLedger(admin);
    expect(audit).toMatchObject({ ok: true, total: 0, unbalancedTx: [], driftedAccounts: [], negativeAccounts: [] });
  }

  /**
   * WRITERS writers commit `rounds` rounds of batches at once. In each, every writer decides
   * two units of its own of each of two jobs (paying hosts the others pay too) and, with all
   * the others, one unit of the first job; then two of them end both jobs while the two others
   * decide their last units.
   */
  async function campaign(c: Campaign) {
    const HOSTS = Array.from({ length: 8 }, (_, i) => `${c.name}h${i}`);
    const owners = [`${c.name}OwnerA`, `${c.name}OwnerB`];
    for (const id of owners) await owner(id);
    // jA: every writer's own units, one unit per round decided by all of them at once, and
    // late units decided while the job ends; its escrow holds more than it can pay (a refund
    // is due). jB: an escrow short of its units' pay (as a backtrack can leave one): payouts stop at it.
    const ownUnits = WRITERS * c.rounds * 2;
    const contested = (r: number) => ownUnits + r;
    const late = (w: number, k: number) => ownUnits + c.rounds + (w - 2) * 2 + k;
    const jA = { id: `${c.name}JobA`, units: ownUnits + c.rounds + 4, estimate: (ownUnits + c.rounds + 4) * 2 * PAY + 2500 };
    const jB = { id: `${c.name}JobB`, units: ownUnits + 4, estimate: Math.round(ownUnits * 2 * PAY * 0.6) };
    await hotStore(admin).write([submitOp(jA.id, owners[0], jA.units, jA.estimate)]);
    await hotStore(admin).write([submitOp(jB.id, owners[1], jB.units, jB.estimate)]);
    await hotStore(admin).write(HOSTS.map(hello));
    const hi = (h: string): PersistOp[] => (c.hellos ? [hello(h)] : []);
    const { commit, retried, reliabilityAdds, expectAllWritten } = committer(writers, c.retries);

    for (let r = 0; r < c.rounds; r++) {
      await Promise.all(Array.from({ length: WRITERS }, (_, w) => {
        const ops: PersistOp[] = [...hi(HOSTS[(r + w) % HOSTS.length])];
        const paid: string[] = [];
        // Jobs in either order: the order ops come in must not decide the order rows are locked in.
        for (const job of w % 2 ? [jB, jA] : [jA, jB]) {
          for (let k = 0; k < 2; k++) {
            const hosts: [string, string] = [HOSTS[(w + k + r) % HOSTS.length], HOSTS[(w + k + r + 3) % HOSTS.length]];
            ops.push(...decide(job.id, (r * WRITERS + w) * 2 + k, hosts, `w${w}`));
            paid.push(...hosts);
          }
        }
        const mine: [string, string] = [HOSTS[(2 * w) % HOSTS.length], HOSTS[(2 * w + 1) % HOSTS.length]];
        ops.push(...decide(jA.id, contested(r), mine, `w${w}`));
        ops.push(reliability([...new Set([...paid, ...mine])]));
        return commit(w, ops, `round ${r}`);
      }));
      const escrows = await admin.account.findMany({ where: { id: { in: [escrowAccount(jA.id), escrowAccount(jB.id)] } }, select: { id: true, balance: true } });
      for (const e of escrows) expect(e.balance, `${e.id} after round ${r}`).toBeGreaterThanOrEqual(0);
    }
    // The end: two writers race to end both jobs while two others decide their last units.
    await Promise.all([
      commit(0, [...hi(HOSTS[0]), reliability([HOSTS[0], HOSTS[5]]), finish(jA.id), finish(jB.id)], "ending A then B"),
      commit(1, [...hi(HOSTS[5]), reliability([HOSTS[5], HOSTS[0]]), ...(c.oppositeEnds ? [finish(jB.id), finish(jA.id)] : [finish(jA.id), finish(jB.id)])], "ending both"),
      ...[2, 3].map((w) => commit(w, [
        ...hi(HOSTS[w]),
        ...decide(jB.id, ownUnits + (w - 2) * 2, [HOSTS[w], HOSTS[w + 4]], `w${w}`),
        ...decide(jA.id, late(w, 0), [HOSTS[w + 4], HOSTS[w]], `w${w}`),
        ...decide(jA.id, late(w, 1), [HOSTS[w], HOSTS[w + 1]], `w${w}`),
        ...decide(jB.id, ownUnits + (w - 2) * 2 + 1, [HOSTS[w + 1], HOSTS[w]], `w${w}`),
        reliability([HOSTS[w], HOSTS[w + 1], HOSTS[w + 4]]),
      ], "last verdicts")),
    ]);
    expectAllWritten(c.name);

    const a = await expectEndedOnce(jA.id, jA.estimate, { refund: true, minDone: ownUnits + c.rounds });
    expect(a.paid, `${jA.id} pays every decided unit in full`).toBe(a.done * 2 * PAY);
    const b = await expectEndedOnce(jB.id, jB.estimate, { refund: false, minDone: ownUnits });
    expect(b.paid, `${jB.id} pays out its whole escrow, no more`).toBe(jB.estimate);
    const balances = await Promise.all(owners.map(async (o) => (await admin.account.findUniqueOrThrow({ where: { id: userAccount(o) } })).balance));
    expect(balances, "the owners' balances").toEqual([100_000 - a.paid, 100_000 - jB.estimate]);
    await expectVolunteers(HOSTS, reliabilityAdds);
    return { retried };
  }

  /**
   * `races` times over, on two fresh two-unit jobs: two writers end both jobs, in opposite
   * orders, while two others decide their units (each both jobs, in opposite orders too).
   */
  async function endRaces(name: string, races: number, retries: number) {
    await owner(`${name}Owner`);
    const hosts = Array.from({ length: 4 }, (_, i) => `${name}h${i}`);
    await hotStore(admin).write(hosts.map(hello));
    const { commit, retried, reliabilityAdds, expectAllWritten } = committer(writers, retries);
    const jobs: string[] = [];
    for (let i = 0; i < races; i++) {
      const [a, b] = [`${name}${i}a`, `${name}${i}b`];
      jobs.push(a, b);
      await hotStore(admin).write([submitOp(a, `${name}Owner`, 2, 500)]);
      await hotStore(admin).write([submitOp(b, `${name}Owner`, 2, 500)]);
      await Promise.all([
        commit(0, [finish(a), finish(b)], `race ${i}: ending a then b`),
        commit(1, [finish(b), finish(a)], `race ${i}: ending b then a`),
        commit(2, [...decide(a, 0, [hosts[0], hosts[1]], "w2"), ...decide(b, 0, [hosts[0], hosts[1]], "w2")], `race ${i}: deciding a and b`),
        commit(3, [...decide(b, 1, [hosts[2], hosts[3]], "w3"), ...decide(a, 1, [hosts[2], hosts[3]], "w3")], `race ${i}: deciding b and a`),
      ]);
    }
    expectAllWritten(name);
    let spent = 0;
    for (const j of jobs) spent += (await expectEndedOnce(j, 500, { refund: true, minDone: 0 })).paid;
    expect((await admin.account.findUniqueOrThrow({ where: { id: userAccount(`${name}Owner`) } })).balance, "the owner's balance").toBe(100_000 - spent);
    await expectVolunteers(hosts, reliabilityAdds);
    return { retried };
  }

  it("verdicts on different units of the same jobs, one unit decided by all, two writers ending the jobs: each unit paid once, one refund", async () => {
    const { retried } = await campaign({ name: "v", rounds: 12, hellos: false, oppositeEnds: false, retries: 0 });
    expect(retried).toEqual([]);
  });

  it("the same with hellos in the batches and jobs ended in either order, failed batches written again: nothing lost, nothing twice", async () => {
    await campaign({ name: "r", rounds: 4, hellos: true, oppositeEnds: true, retries: 20 });
  });

  it("jobs ended in opposite orders while their units are decided, failed batches written again: each ends once, refunds once", async () => {
    await endRaces("e", 8, 20);
  });

  // A batch locks every job it decides units of or ends first, in id order, and only then
  // volunteers, accounts and results: hellos, verdicts and endings in any order never deadlock.
  it("hellos in the same batches as verdicts, without a deadlock", async () => {
    const { retried } = await campaign({ name: "h", rounds: 3, hellos: true, oppositeEnds: false, retries: 0 });
    expect(retried).toEqual([]);
  });

  it("jobs ended in opposite orders while their units are decided, without a deadlock", async () => {
    await endRaces("d", 8, 0);
  });
});

describe.runIf(!!pgMissing)("several writers committing at once on one PostgreSQL database", () => {
  it.skip(`needs PostgreSQL: ${pgMissing ?? ""}`, () => {});
});
