import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditLedger, balanceOf } from "../../server/services/credits/ledger";
import { escrowAccount, MILLI, userAccount } from "../../server/services/credits/accounts";
import { trpc } from "../helpers/clients";
import { computeLocally, piCheater, startVolunteer, type FleetVolunteer } from "../helpers/fleet";
import { createUserWithKey, startTestServer, waitFor, type TestServer } from "../helpers/server";

// Three volunteers on three accounts, each with its own wrong answer: with two replicas and
// at most three instances per unit, no two results can ever agree. Where the server cannot
// compute a unit itself (consumers' programs; here a built-in kernel with spot-checks turned
// off), the job must fail, say which unit had no quorum, pay nobody and give the consumer its
// escrow back. Where it can (the default for built-in kernels), its own answer settles the
// unit: the job completes with the right result and the liars are banned.
const CHUNKS = 3;
const PARAMS = { samples: CHUNKS * 100_000, seed: 99 };

describe("a unit that cannot reach its quorum", () => {
  let srv: TestServer;
  const fleet: FleetVolunteer[] = [];

  beforeAll(async () => {
    srv = await startTestServer({ SPOT_CHECKS: "off" });
  });
  afterAll(async () => {
    for (const v of fleet) v.stop();
    await srv?.close();
  });

  it("fails the job with the unit and 'no quorum' in its error, pays nobody and refunds the escrow", async () => {
    const { db, coordinator, env } = srv.deps;
    const starter = Math.round(env.STARTER_CREDITS * MILLI);
    await createUserWithKey(srv.deps, "root@example.com");
    const consumer = await createUserWithKey(srv.deps, "consumer@example.com");
    const liars = await Promise.all([1, 2, 3].map((i) => createUserWithKey(srv.deps, `liar${i}@example.com`)));
    fleet.push(...liars.map((l, i) => startVolunteer(srv.url, { name: `liar-${i + 1}`, apiKey: l.apiKey, compute: piCheater(i + 1) })));
    await Promise.all(fleet.map((v) => v.connected()));

    const api = trpc(srv.url, consumer.apiKey);
    const { id, estimate } = await api.jobs.submit.mutate({ kernel: "pi", chunks: CHUNKS, params: PARAMS, replication: { replicas: 2, maxReplicas: 3 } });
    expect(await balanceOf(db, escrowAccount(id))).toBe(estimate);
    await waitFor(async () => (await db.job.findUnique({ where: { id }, select: { state: true } }))?.state !== "running", 20_000, "the job to end");
    await coordinator.drain();

    // The consumer sees why, through the API.
    const job = await api.jobs.get.query({ id });
    expect(job).toMatchObject({ state: "failed", cost: 0, replication: { replicas: 2, quorum: 2, maxReplicas: 3 } });
    const m = /^no quorum for unit (\d+): 3 results, 3 different answers \(quorum 2, at most 3 instances\)$/.exec(job.error ?? "");
    expect(m, `job error: ${job.error}`).not.toBeNull();
    expect(await api.jobs.result.query({ id })).toBeNull();
    const idx = Number(m![1]);
    expect(idx).toBeGreaterThanOrEqual(0);
    expect(idx).toBeLessThan(CHUNKS);

    // That unit got three results from three hosts and accounts, three different answers; none counts.
    const unit = await db.workUnit.findUniqueOrThrow({ where: { jobId_round_idx: { jobId: id, round: 0, idx } }, select: { id: true, done: true, output: true } });
    expect(unit).toMatchObject({ done: false, output: null });
    const rows = await db.result.findMany({ where: { unitId: unit.id }, select: { volunteerId: true, accountId: true, digest: true, state: true, paid: true } });
    expect(rows).toHaveLength(3);
    for (const key of ["volunteerId", "accountId", "digest"] as const) expect(new Set(rows.map((r) => r[key])).size).toBe(3);
    const all = await db.result.findMany({ where: { jobId: id }, select: { state: true, paid: true } });
    for (const r of all) expect(r).toEqual({ state: "unneeded", paid: 0 });
    expect(await db.workUnit.count({ where: { jobId: id, done: true } })).toBe(0);

    // Nobody was paid; the whole escrow went back to the consumer.
    expect(await db.ledgerEntry.count({ where: { jobId: id, kind: "payout" } })).toBe(0);
    const refund = await db.ledgerEntry.findMany({ where: { jobId: id, kind: "refund" }, select: { accountId: true, amount: true } });
    expect(refund.sort((a, b) => a.amount - b.amount)).toEqual([
      { accountId: escrowAccount(id), amount: -estimate },
      { accountId: userAccount(consumer.user.id), amount: estimate },
    ]);
    expect(await balanceOf(db, escrowAccount(id))).toBe(0);
    expect(await balanceOf(db, userAccount(consumer.user.id))).toBe(starter);
    for (const l of liars) expect(await balanceOf(db, userAccount(l.user.id))).toBe(starter);
    for (const v of fleet) expect(v.snapshot()).toMatchObject({ earned: 0, validated: 0 });
    expect(await auditLedger(db)).toMatchObject({ ok: true, total: 0 });

    // Without a quorum nobody is known to be wrong: no invalid marks, no bans; all still online.
    const recs = await db.reliability.findMany({ select: { id: true, invalid: true, bannedUntil: true } });
    for (const r of recs) expect(r).toMatchObject({ invalid: 0, bannedUntil: null });
    expect(coordinator.volunteers()).toHaveLength(3);
    expect(coordinator.status()).toMatchObject({ jobsRunning: 0, tasksQueued: 0, tasksRunning: 0 });
  });
});

describe("liars on every replica, with spot-checks", () => {
  let srv: TestServer;
  const fleet: FleetVolunteer[] = [];

  beforeAll(async () => {
    srv = await startTestServer();
  });
  afterAll(async () => {
    for (const v of fleet) v.stop();
    await srv?.close();
  });

  it("the server's own computation settles the unit: the right result, the liars banned and paid nothing", async () => {
    const { db, coordinator, env } = srv.deps;
    const starter = Math.round(env.STARTER_CREDITS * MILLI);
    await createUserWithKey(srv.deps, "root@example.com");
    const consumer = await createUserWithKey(srv.deps, "consumer@example.com");
    const liars = await Promise.all([1, 2, 3].map((i) => createUserWithKey(srv.deps, `liar${i}@example.com`)));
    fleet.push(...liars.map((l, i) => startVolunteer(srv.url, { name: `liar-${i + 1}`, apiKey: l.apiKey, compute: piCheater(i + 1), reconnect: false })));
    await Promise.all(fleet.map((v) => v.connected()));

    const api = trpc(srv.url, consumer.apiKey);
    const { id } = await api.jobs.submit.mutate({ kernel: "pi", chunks: CHUNKS, params: PARAMS, replication: { replicas: 2, maxReplicas: 3 } });
    // Two liars on one unit disagree: the server computes it and both are banned at once.
    await waitFor(() => coordinator.volunteers().length <= 1, 20_000, "two liars to be banned");
    const honest = [1, 2].map((i) => startVolunteer(srv.url, { name: `honest-${i}` }));
    fleet.push(...honest);
    await waitFor(async () => (await db.job.findUnique({ where: { id }, select: { state: true } }))?.state !== "running", 30_000, "the job to end");
    await coordinator.drain();

    const job = await api.jobs.get.query({ id });
    expect(job).toMatchObject({ state: "completed", error: null, unitsDone: CHUNKS });
    expect(await api.jobs.result.query({ id })).toEqual(computeLocally("pi", PARAMS, CHUNKS).result);
    // Every liar whose answer met another one's (or an honest one's) is banned; none is paid.
    let banned = 0;
    for (const l of liars) {
      expect(await balanceOf(db, userAccount(l.user.id))).toBe(starter);
      const rec = await db.reliability.findUnique({ where: { id: userAccount(l.user.id) } });
      if (!rec?.bannedUntil) continue;
      expect(rec.banReason).toMatch(/^failed a spot-check/);
      expect(rec.bannedUntil.getTime()).toBeGreaterThan(Date.now());
      banned++;
    }
    expect(banned).toBeGreaterThanOrEqual(2);
    const liarResults = await db.result.findMany({ where: { jobId: id, accountId: { in: liars.map((l) => userAccount(l.user.id)) } }, select: { state: true, paid: true } });
    for (const r of liarResults) expect(r).toEqual({ state: "invalid", paid: 0 });
    expect(await auditLedger(db)).toMatchObject({ ok: true, total: 0 });
    coordinator.scheduler.audit();
  });
});
