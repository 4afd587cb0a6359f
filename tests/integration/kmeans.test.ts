import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseEnv } from "../../server/env";
import { startServer, type RunningServer } from "../../server/app";
import { createPrisma, type Db } from "../../server/store/prisma";
import { auditLedger, balanceOf } from "../../server/services/credits/ledger";
import { escrowAccount, MILLI, userAccount } from "../../server/services/credits/accounts";
import { completeRound } from "../../server/services/jobs/rounds";
import { kmeans, kmeansTrueCentres, type KmeansParams, type KmeansResult, type KmeansState } from "../../worker/kernels/kmeans";
import { trpc } from "../helpers/clients";
import { startFleet, type FleetVolunteer } from "../helpers/fleet";
import { expectSettledJob } from "../helpers/settlement";
import { freePort, tempDatabase } from "../helpers/serverProcess";
import { testEngine } from "../helpers/testDb";
import { createUserWithKey, runCli, startTestServer, TEST_SECRET, waitFor, type TestServer } from "../helpers/server";

// Iterative jobs end to end: a k-means job runs round after round on a real server with
// in-process volunteers (two replicas, quorum two, so three volunteers), the coordinator steps
// the centroids between rounds, and the job ends converged on the centres its data was
// generated around, with each round's latency and metric recorded and the unused escrow
// (the rounds it did not need) refunded.

const rounds = kmeans.rounds!;
const REPLICATION = { replicas: 2, quorum: 2, adaptive: false };

/** The job as the kernel computes it in this process, round by round, with each round's input state. */
function expectedRun(raw: Partial<KmeansParams>, chunks: number) {
  const p = kmeans.params.parse(raw);
  let state: KmeansState = rounds.init(p);
  const states: KmeansState[] = [];
  const metrics: number[] = [];
  for (let round = 1; ; round++) {
    states.push(state);
    const outputs = rounds.splitRound(p, state, chunks).map((u) => kmeans.run(p, u.input));
    const s = rounds.step(p, state, outputs, round);
    metrics.push(s.metric);
    state = s.state;
    if (s.done) break;
  }
  return { p, states, metrics, final: state };
}

/** The distance from each generating centre to its own (nearest, distinct) found centroid. */
function centreErrors(p: KmeansParams, centroids: number[][]) {
  const used = new Set<number>();
  return kmeansTrueCentres(p).map((t) => {
    const ranked = centroids.map((c, i) => ({ i, d: Math.hypot(...c.map((v, k) => v - t[k])) })).sort((a, b) => a.d - b.d);
    expect(used.has(ranked[0].i), "two generating centres share a centroid").toBe(false);
    used.add(ranked[0].i);
    return ranked[0].d;
  });
}

type Api = ReturnType<typeof trpc>;

/** Checks a finished k-means job against the in-process run: rounds, result, units, money. */
async function expectConverged(db: Db, api: Api, id: string, expected: ReturnType<typeof expectedRun>, chunks: number) {
  const { p } = expected;
  const job = await api.jobs.get.query({ id });
  expect(job, job.error ?? "").toMatchObject({ state: "completed", error: null, round: expected.metrics.length, maxRounds: p.maxRounds });
  expect(job.progress).toMatchObject({ total: chunks, done: chunks });

  // Every round is recorded, with its latency and the metric, which ends within epsilon.
  expect(job.rounds.map((r) => r.round)).toEqual(expected.metrics.map((_, i) => i + 1));
  for (const r of job.rounds) {
    expect(r.latencyMs).toBeGreaterThanOrEqual(0);
    expect(r.finishedAt).not.toBeNull();
    expect(r.stats.inertia).toBeGreaterThan(0);
  }
  // (SQLite's REAL keeps a metric to about 15 digits; the centroids travel as JSON, exactly.)
  job.rounds.forEach((r, i) => expect(r.metric).toBeCloseTo(expected.metrics[i], 12));
  expect(job.rounds.length).toBeGreaterThanOrEqual(3);
  expect(job.rounds.length).toBeLessThan(p.maxRounds);
  expect(job.rounds.at(-1)!.metric).toBeLessThanOrEqual(p.epsilon);
  expect(job.rounds.at(-1)!.metric!).toBeLessThan(job.rounds[0].metric!);
  expect(job.rounds.at(-1)!.stats.inertia).toBeLessThan(job.rounds[0].stats.inertia);

  // The result: the centroids the kernel computes in this process, bit for bit, and they
  // sit on the centres the data was generated around.
  const result = (await api.jobs.result.query({ id })) as KmeansResult;
  expect(result).toMatchObject({ converged: true, rounds: expected.metrics.length, metrics: job.rounds.map((r) => r.metric) });
  expect(result.centroids).toEqual(expected.final.centroids);
  expect(Math.max(...centreErrors(p, result.centroids))).toBeLessThan(0.1 * p.spread);

  // The last round's units started from the centroids the round before produced; a stepped
  // round's units keep their outputs only (batchSql.ts, SPENT_INPUTS_SQL).
  const units = await db.workUnit.findMany({ where: { jobId: id }, select: { round: true, idx: true, input: true, done: true, output: true }, orderBy: [{ round: "asc" }, { idx: "asc" }] });
  expect(units).toHaveLength(chunks * expected.metrics.length);
  expect(units.every((u) => u.done && u.output !== null)).toBe(true);
  const last = expected.metrics.length;
  for (const u of units) {
    if (u.round === last) expect(JSON.parse(u.input).centroids).toEqual(expected.states[u.round - 1].centroids);
    else expect(u.input).toBe("null");
  }

  // Money: every unit of every round paid to exactly two volunteers out of the escrow, the
  // rounds it did not run refunded, the books balanced.
  const settled = await expectSettledJob(db, id, { exactQuorum: true });
  const pays = await db.workUnit.groupBy({ by: ["round"], where: { jobId: id }, _sum: { pay: true } });
  expect(new Set(pays.map((r) => r._sum.pay)).size, "every round is paid as the first").toBe(1);
  const perRound = pays[0]._sum.pay!;
  expect(settled.units).toHaveLength(units.length);
  expect(job.estimate).toBe(perRound * REPLICATION.quorum * p.maxRounds);
  expect(job.cost).toBe(perRound * REPLICATION.quorum * expected.metrics.length);
  const refunds = await db.ledgerEntry.aggregate({ where: { jobId: id, kind: "refund", accountId: userAccount(job.ownerId) }, _sum: { amount: true } });
  expect(refunds._sum.amount).toBe(job.estimate - job.cost);
  expect(await balanceOf(db, escrowAccount(id))).toBe(0);
  expect(await auditLedger(db)).toMatchObject({ ok: true, total: 0 });
  return job;
}

describe("iterative k-means jobs", () => {
  let srv: TestServer;
  let fleet: FleetVolunteer[] = [];
  let consumer: Awaited<ReturnType<typeof createUserWithKey>>;

  beforeAll(async () => {
    srv = await startTestServer();
    consumer = await createUserWithKey(srv.deps, "kmeans@example.com");
    fleet = await startFleet(srv.url, 3, { prefix: "km" });
  });
  afterAll(async () => {
    for (const v of fleet) v.stop();
    await srv?.close();
  });

  it("runs round after round until the centroids converge on the generating centres", async () => {
    const chunks = 8;
    const params = { seed: 2024, k: 8, spread: 3, points: 80_000 };
    const expected = expectedRun(params, chunks);
    const api = trpc(srv.url, consumer.apiKey);
    const starter = await balanceOf(srv.deps.db, userAccount(consumer.user.id));

    const { id, chunks: units } = await api.jobs.submit.mutate({ kernel: "kmeans", chunks, params, replication: REPLICATION });
    expect(units).toBe(chunks);
    // While it runs, the page sees the current round.
    const running = await api.jobs.get.query({ id });
    expect(running.round).toBeGreaterThanOrEqual(1);
    await waitFor(async () => (await api.jobs.get.query({ id })).state !== "running", 30_000, "the k-means job to end");

    const job = await expectConverged(srv.deps.db, api, id, expected, chunks);
    expect(await balanceOf(srv.deps.db, userAccount(consumer.user.id))).toBe(starter - job.cost);
    expect(srv.deps.coordinator.queues()).toEqual([]);
    expect(srv.logs.join("\n")).toMatch(new RegExp(`job ${id} completed in round ${expected.metrics.length}`));

    // Stepping a stored round again (what a restart between a step and the job's end does)
    // reuses the stored step: the same result, the next round's units not made twice.
    const last = expected.metrics.length;
    const again = await completeRound(srv.deps, id, last);
    expect(again.kind === "done" && JSON.parse(again.result!)).toEqual(await api.jobs.result.query({ id }));
    const earlier = await completeRound(srv.deps, id, 1);
    expect(earlier.kind === "next" && earlier.units.map((u) => u.id)).toEqual(Array.from({ length: chunks }, (_, i) => `${id}.r2.${i}`));
    expect(await srv.deps.db.workUnit.count({ where: { jobId: id } })).toBe(chunks * last);
  });

  it("cancels the whole job, not just its current round", async () => {
    const api = trpc(srv.url, consumer.apiKey);
    // Slow to converge (overlapping clusters): it would run all its 20 rounds.
    const params = { seed: 5, k: 12, spread: 2.5, points: 200_000 };
    const { id } = await api.jobs.submit.mutate({ kernel: "kmeans", chunks: 20, params, replication: REPLICATION });
    await waitFor(async () => ((await api.jobs.get.query({ id })).round ?? 0) >= 2, 30_000, "round 2 to start");
    const cancelled = await api.jobs.cancel.mutate({ id });
    expect(cancelled.state).toBe("cancelled");
    const roundsAtCancel = await srv.deps.db.jobRound.count({ where: { jobId: id } });

    // Nothing of the job is left to compute, and no later round starts.
    expect(srv.deps.coordinator.queues()).toEqual([]);
    expect(srv.deps.coordinator.status()).toMatchObject({ jobsRunning: 0, tasksQueued: 0, tasksRunning: 0 });
    await new Promise((r) => setTimeout(r, 300));
    expect(await srv.deps.db.jobRound.count({ where: { jobId: id } })).toBe(roundsAtCancel);
    expect((await api.jobs.get.query({ id })).state).toBe("cancelled");
    expect(await balanceOf(srv.deps.db, escrowAccount(id))).toBe(0);
    expect(await auditLedger(srv.deps.db)).toMatchObject({ ok: true, total: 0 });
  });

  it("is submitted and followed from the CLI like any other kernel", async () => {
    const out = await runCli(
      ["submit", "kmeans", "--chunks", "8", "--params", '{"k":4,"seed":5}', "--wait", "--json", "--url", srv.url],
      { TABGRID_API_KEY: consumer.apiKey },
    );
    expect(out.code, out.stderr).toBe(0);
    // A JSON line per round as it ended, then the job's.
    const lines = out.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const report = lines.at(-1) as { status: string; result: KmeansResult; rounds: Array<{ round: number; metric: number }> };
    expect(report.status).toBe("completed");
    expect(lines.slice(0, -1)).toEqual(report.rounds);
    expect(report.result.converged).toBe(true);
    expect(report.rounds.map((r) => r.round)).toEqual(report.result.metrics.map((_, i) => i + 1));
    const p = kmeans.params.parse({ k: 4, seed: 5 });
    expect(Math.max(...centreErrors(p, report.result.centroids))).toBeLessThan(0.1 * p.spread);
  });
});

describe("an iterative job across a server restart", () => {
  let tmp: Awaited<ReturnType<typeof tempDatabase>>;
  let db: Db;
  const servers: RunningServer[] = [];
  let fleet: FleetVolunteer[] = [];
  const logs: string[] = [];

  beforeAll(async () => {
    tmp = await tempDatabase();
    db = createPrisma(tmp.databaseUrl);
    // SQLite: this client keeps the file open while servers come and go, in the server's mode.
    if (testEngine() === "sqlite") await db.$executeRawUnsafe("PRAGMA journal_mode = WAL");
  });
  afterAll(async () => {
    for (const v of fleet) v.stop();
    for (const s of servers) await s.close().catch(() => {});
    await db?.$disconnect();
    await tmp?.remove();
  });

  it("resumes the current round from what was stored and converges to the same centroids", async () => {
    const port = await freePort();
    const start = async () => {
      const env = parseEnv({
        PORT: String(port), HOST: "127.0.0.1", LOAD_SHED_DELAY_MS: "0", LOAD_SHED_MAX_REQUESTS: "0", DATABASE_URL: tmp.databaseUrl, DATA_DIR: tmp.dir, COMMIT_INTERVAL_MS: "2",
        TABGRID_UI: "off", NEXTAUTH_SECRET: TEST_SECRET, NODE_ENV: "test",
      });
      const s = await startServer(env, { ui: false, log: (m) => logs.push(m) });
      servers.push(s);
      return s;
    };
    const first = await start();
    const consumer = await createUserWithKey(first.deps, "restart@example.com");
    const starter = 100 * MILLI;
    fleet = await startFleet(first.url, 3, { prefix: "rs" });

    const chunks = 30;
    const params = { seed: 4242, k: 8, spread: 3, points: 600_000 };
    const expected = expectedRun(params, chunks);
    expect(expected.metrics.length).toBeGreaterThanOrEqual(3);
    const { id } = await trpc(first.url, consumer.apiKey).jobs.submit.mutate({ kernel: "kmeans", chunks, params, replication: REPLICATION });

    // Stop in the middle: round 2 or later has begun and some of its results are in.
    await waitFor(
      async () => {
        const round = (await db.jobRound.findFirst({ where: { jobId: id }, orderBy: { round: "desc" }, select: { round: true } }))?.round ?? 0;
        if (round < 2) return false;
        return (await db.result.count({ where: { jobId: id, unit: { round } } })) > 0;
      },
      30_000,
      "round 2 to be under way",
      2,
    );
    await first.close();
    const stoppedAt = new Date();
    const mid = await db.job.findUniqueOrThrow({ where: { id }, select: { state: true } });
    expect(mid.state).toBe("running");
    const roundsBefore = await db.jobRound.findMany({ where: { jobId: id }, orderBy: { round: "asc" } });
    const current = roundsBefore.at(-1)!.round;
    expect(current).toBeGreaterThanOrEqual(2);
    expect(current).toBeLessThanOrEqual(expected.metrics.length);
    const doneBefore = await db.workUnit.findMany({ where: { jobId: id, done: true }, select: { id: true, output: true } });
    // Results that awaited their partner replica are recovered and count toward the quorum.
    const pendingBefore = await db.result.findMany({ where: { jobId: id, state: "pending" }, select: { id: true } });
    expect(await db.workUnit.count({ where: { jobId: id, round: current, done: true } })).toBeLessThan(chunks);
    await waitFor(() => fleet.every((v) => v.snapshot().connection !== "connected"), 5000, "the volunteers to notice");

    // Same port, same database and data directory: the volunteers come back on their own.
    const second = await start();
    expect(logs.join("\n")).toMatch(/recovered 1 running job\(s\)/);
    await waitFor(() => fleet.every((v) => v.snapshot().connection === "connected"), 20_000, "the volunteers to reconnect");
    const api = trpc(second.url, consumer.apiKey);
    await waitFor(async () => (await api.jobs.get.query({ id })).state !== "running", 30_000, "the job to end after the restart");

    const job = await expectConverged(db, api, id, expected, chunks);
    expect(await balanceOf(db, userAccount(consumer.user.id))).toBe(starter - job.cost);

    // Nothing was redone: the rounds finished before the stop kept their records, and units
    // validated before it kept their outputs and got no result after it.
    const roundsAfter = await db.jobRound.findMany({ where: { jobId: id }, orderBy: { round: "asc" } });
    for (const r of roundsBefore.filter((r) => r.finishedAt)) expect(roundsAfter[r.round - 1]).toEqual(r);
    const late = await db.result.findMany({ where: { unitId: { in: doneBefore.map((u) => u.id) }, receivedAt: { gt: stoppedAt } }, select: { id: true } });
    expect(late).toEqual([]);
    const recovered = await db.result.findMany({ where: { id: { in: pendingBefore.map((r) => r.id) } }, select: { state: true } });
    expect(recovered.map((r) => r.state)).toEqual(pendingBefore.map(() => "valid"));
    const outputs = new Map((await db.workUnit.findMany({ where: { jobId: id }, select: { id: true, output: true } })).map((u) => [u.id, u.output]));
    for (const u of doneBefore) expect(outputs.get(u.id)).toBe(u.output);
    expect(roundsAfter.some((r) => r.startedAt > stoppedAt || (r.finishedAt && r.finishedAt > stoppedAt))).toBe(true);
  });
});
