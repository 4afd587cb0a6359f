import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditLedger, balanceOf } from "../../server/services/credits/ledger";
import { MILLI, escrowAccount, userAccount } from "../../server/services/credits/accounts";
import { hostKey } from "../../server/services/volunteers/reliability";
import { trpc } from "../helpers/clients";
import { Colluder } from "../helpers/colluders";
import { computeLocally, startVolunteer, type FleetVolunteer } from "../helpers/fleet";
import { createUserWithKey, newIdentity, startTestServer, waitFor, type TestServer } from "../helpers/server";

// Backtracking: two colluders with a long verified record (credible enough that their
// agreement is accepted unchecked, and no random spot-check here) get a wrong job completed.
// One of them is later caught on another job; every result it ever returned is then void, the
// completed job is reopened and recomputed by honest volunteers, and what the colluders were
// paid goes back through the ledger.
const CHUNKS = 8;
const PARAMS = { samples: CHUNKS * 100_000, seed: 77 };

describe("backtracking a caught host", () => {
  let srv: TestServer;
  const closers: Array<() => unknown> = [];

  beforeAll(async () => {
    srv = await startTestServer({ SPOT_CHECK_MIN_RATE: "0" });
  });
  afterAll(async () => {
    for (const c of closers) await c();
    await srv?.close();
  });

  it("reopens a completed job it corrupted, recomputes it right and reverses the payouts", async () => {
    const { db, coordinator, env } = srv.deps;
    const starter = Math.round(env.STARTER_CREDITS * MILLI);
    await createUserWithKey(srv.deps, "root@example.com");
    const consumer = await createUserWithKey(srv.deps, "consumer@example.com");
    const mallories = await Promise.all([1, 2].map((i) => createUserWithKey(srv.deps, `mallory${i}@example.com`)));
    const identities = [newIdentity(), newIdentity()];
    // A long, clean, verified record for both hosts and accounts (as sleepers would have built).
    const record = { spotChecks: 5000, valid: 5000, consecutiveValid: 5000 };
    for (const [i, m] of mallories.entries()) {
      for (const id of [hostKey(identities[i].volunteerId), userAccount(m.user.id)]) await db.reliability.create({ data: { id, ...record } });
    }
    const colluders = await Promise.all(mallories.map((m, i) => Colluder.connect(srv.url, { apiKey: m.apiKey, identity: identities[i], name: `sleeper-${i}` })));
    closers.push(...colluders.map((c) => () => c.close()));

    const api = trpc(srv.url, consumer.apiKey);
    const expected = computeLocally("pi", PARAMS, CHUNKS);
    const a = await api.jobs.submit.mutate({ kernel: "pi", chunks: CHUNKS, params: PARAMS, replication: { replicas: 2, adaptive: false } });
    await waitFor(async () => (await db.job.findUniqueOrThrow({ where: { id: a.id } })).state === "completed", 15_000, "job A to complete");
    await coordinator.drain();
    // Corrupted: both replicas of every unit came from the colluders, who were paid.
    expect(await api.jobs.result.query({ id: a.id })).not.toEqual(expected.result);
    const paidBefore = await Promise.all(mallories.map((m) => balanceOf(db, userAccount(m.user.id))));
    for (const b of paidBefore) expect(b).toBeGreaterThan(starter);

    // Honest volunteers join; on the next job a colluder's answer meets an honest one.
    const honest: FleetVolunteer[] = [1, 2].map((i) => startVolunteer(srv.url, { name: `honest-${i}` }));
    closers.push(...honest.map((v) => () => v.stop()));
    await Promise.all(honest.map((v) => v.connected()));
    const b = await api.jobs.submit.mutate({ kernel: "pi", chunks: 64, params: { samples: 64 * 100_000, seed: 78 }, replication: { replicas: 2 } });
    await waitFor(() => colluders.every((c) => c.ban), 20_000, "both colluders to be caught");

    // Job A ran again and now holds the honest answer, unit by unit.
    await waitFor(async () => {
      const rows = await db.job.findMany({ where: { id: { in: [a.id, b.id] } }, select: { state: true } });
      return rows.every((r) => r.state === "completed");
    }, 30_000, "both jobs to complete");
    await coordinator.drain();
    expect(await api.jobs.result.query({ id: a.id })).toEqual(expected.result);
    expect(await api.jobs.result.query({ id: b.id })).toEqual(computeLocally("pi", { samples: 64 * 100_000, seed: 78 }, 64).result);
    const units = await db.workUnit.findMany({ where: { jobId: a.id }, select: { output: true }, orderBy: { idx: "asc" } });
    expect(units.map((u) => JSON.parse(u.output!))).toEqual(expected.outputs);
    const colluderRows = await db.result.findMany({ where: { volunteerId: { in: identities.map((i) => i.volunteerId) } }, select: { state: true, paid: true } });
    expect(colluderRows.length).toBeGreaterThan(0);
    for (const r of colluderRows) expect(r).toEqual({ state: "invalid", paid: 0 });

    // Their payouts were reversed: they keep nothing but their sign-up grant.
    for (const m of mallories) {
      expect(await balanceOf(db, userAccount(m.user.id))).toBe(starter);
      const kinds = await db.ledgerEntry.groupBy({ by: ["kind"], where: { accountId: userAccount(m.user.id) }, _sum: { amount: true } });
      const sum = Object.fromEntries(kinds.map((k) => [k.kind, k._sum.amount]));
      expect(sum.grant).toBe(starter);
      expect(sum.payout).toBeGreaterThan(0);
      expect(sum.reversal).toBe(-sum.payout!);
      const rec = await db.reliability.findUniqueOrThrow({ where: { id: userAccount(m.user.id) } });
      expect(rec.banReason).toMatch(/^failed a spot-check/);
    }
    // The consumer paid for each unit of A once per quorum member, as for any job, and the escrows are empty.
    const jobA = await db.job.findUniqueOrThrow({ where: { id: a.id } });
    const paidA = await db.result.aggregate({ where: { jobId: a.id }, _sum: { paid: true } });
    expect(jobA.cost).toBe(paidA._sum.paid);
    expect(jobA.unitsDone).toBe(CHUNKS);
    expect(await balanceOf(db, escrowAccount(a.id))).toBe(0);
    expect(await auditLedger(db)).toMatchObject({ ok: true, total: 0 });
    expect(srv.logs.some((l) => l.includes(`job ${a.id} reopened`))).toBe(true);
    coordinator.scheduler.audit();
  });
});
