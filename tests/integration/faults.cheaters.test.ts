import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditLedger, balanceOf } from "../../server/services/credits/ledger";
import { MILLI, userAccount } from "../../server/services/credits/accounts";
import { hostKey } from "../../server/services/volunteers/reliability";
import { RawVolunteer, trpc } from "../helpers/clients";
import { computeLocally, piCheater, startVolunteer, type FleetVolunteer } from "../helpers/fleet";
import { expectSettledJob } from "../helpers/settlement";
import { createUserWithKey, startTestServer, waitFor, type TestServer } from "../helpers/server";

// Two cheaters in eight volunteers, colluding: they run under one account and return the
// same wrong answer, so two of them on one unit would make a quorum. The rule that a unit
// never goes to one account twice keeps them apart; each wrong answer meets an honest one,
// the server settles the disagreement by computing the unit itself (a spot-check), and the
// first wrong answer it proves bans the host and its account at once. (Colluders under
// different accounts: tests/integration/attack.collusion.test.ts.)
const CHUNKS = 60;
const PARAMS = { samples: CHUNKS * 500_000, seed: 424242 };

describe("colluding cheaters under one account", () => {
  let srv: TestServer;
  let admin: Awaited<ReturnType<typeof createUserWithKey>>;
  const fleet: FleetVolunteer[] = [];

  beforeAll(async () => {
    srv = await startTestServer();
    admin = await createUserWithKey(srv.deps, "root@example.com"); // the first account is the admin
  });
  afterAll(async () => {
    for (const v of fleet) v.stop();
    await srv?.close();
  });

  it("never get a wrong result accepted, are never paid, and are banned at their first failed spot-check", async () => {
    const { db, coordinator, env } = srv.deps;
    const expected = computeLocally("pi", PARAMS, CHUNKS);
    const starter = Math.round(env.STARTER_CREDITS * MILLI);
    expect(env.BAN_AFTER_INVALID).toBe(3);
    const consumer = await createUserWithKey(srv.deps, "consumer@example.com");
    const mallory = await createUserWithKey(srv.deps, "mallory@example.com");
    const alice = await createUserWithKey(srv.deps, "alice@example.com");

    // The cheaters connect first, so they are first in line for work.
    const cheaters = [0, 1].map((i) => startVolunteer(srv.url, { name: `cheater-${i}`, apiKey: mallory.apiKey, compute: piCheater(+1) }));
    fleet.push(...cheaters);
    await Promise.all(cheaters.map((c) => c.connected()));
    // Honest: five anonymous volunteers and one signed in as alice.
    const honest = [
      ...[0, 1, 2, 3, 4].map((i) => startVolunteer(srv.url, { name: `honest-${i}` })),
      startVolunteer(srv.url, { name: "alice", apiKey: alice.apiKey }),
    ];
    fleet.push(...honest);
    await Promise.all(honest.map((v) => v.connected()));
    const online = coordinator.volunteers();
    for (const c of cheaters) expect(online.find((o) => o.volunteerId === c.identity.volunteerId)).toMatchObject({ userId: mallory.user.id });
    expect(cheaters.map((c) => c.snapshot().account)).toEqual([userAccount(mallory.user.id), userAccount(mallory.user.id)]);

    const api = trpc(srv.url, consumer.apiKey);
    const { id } = await api.jobs.submit.mutate({
      kernel: "pi", chunks: CHUNKS, params: PARAMS, replication: { replicas: 2, quorum: 2, adaptive: false },
    });
    await waitFor(async () => (await db.job.findUnique({ where: { id }, select: { state: true } }))?.state !== "running", 30_000, "the job to end");
    await coordinator.drain();

    // The honest answer, exactly, for the job and for every unit.
    const job = await api.jobs.get.query({ id });
    expect(job).toMatchObject({ state: "completed", error: null, unitsDone: CHUNKS, replication: { replicas: 2, quorum: 2, adaptive: false } });
    expect(await api.jobs.result.query({ id })).toEqual(expected.result);
    const units = await db.workUnit.findMany({ where: { jobId: id }, select: { idx: true, output: true }, orderBy: { idx: "asc" } });
    expect(units.map((u) => JSON.parse(u.output!))).toEqual(expected.outputs);

    // Every cheater result was found invalid and paid nothing: one proved wrong was enough for a ban.
    const cheaterIds = cheaters.map((c) => c.identity.volunteerId);
    const cheaterRows = await db.result.findMany({ where: { jobId: id, volunteerId: { in: cheaterIds } }, select: { state: true, paid: true, accountId: true } });
    // (None at all when a ringer caught them before their real results were recorded.)
    for (const r of cheaterRows) expect(r).toEqual({ state: "invalid", paid: 0, accountId: userAccount(mallory.user.id) });
    expect(job.results.invalid).toBe(cheaterRows.length);
    // A unit the server settled has one valid result (the honest one); the others two.
    expect(job.results.valid).toBeGreaterThanOrEqual(2 * CHUNKS - cheaterRows.length);
    const settled = await expectSettledJob(db, id);
    // Collusion defeated: no unit ever had both cheaters on it.
    for (let idx = 0; idx < CHUNKS; idx++) {
      const hosts = settled.results.filter((r) => r.unitId === `${id}.${idx}`).map((r) => r.volunteerId);
      expect(hosts.filter((h) => cheaterIds.includes(h)).length).toBeLessThanOrEqual(1);
    }

    // The cheaters' account earned nothing.
    expect(await balanceOf(db, userAccount(mallory.user.id))).toBe(starter);
    const malloryEntries = await db.ledgerEntry.findMany({ where: { accountId: userAccount(mallory.user.id) }, select: { kind: true, amount: true } });
    expect(malloryEntries).toEqual([{ kind: "grant", amount: starter }]);
    expect(settled.paidByAccount.has(userAccount(mallory.user.id))).toBe(false);

    // Banned for BAN_HOURS: the account, and the host whose result the server proved wrong.
    const rec = await db.reliability.findUniqueOrThrow({ where: { id: userAccount(mallory.user.id) } });
    expect(rec.bannedUntil!.getTime()).toBeGreaterThan(Date.now() + (env.BAN_HOURS - 1) * 3600_000);
    expect(rec.banReason).toMatch(/^failed a spot-check: (a result for unit \d+ of job \w+ differs from the server's own computation|a known-answer pi task of job \w+ came back wrong)$/);
    expect(rec.valid).toBe(0);
    expect(rec.spotChecks).toBe(0);
    const hostRecs = await db.reliability.findMany({ where: { id: { in: cheaterIds.map(hostKey) } }, select: { valid: true, invalid: true, bannedUntil: true } });
    expect(hostRecs.some((h) => h.bannedUntil && h.bannedUntil.getTime() > Date.now())).toBe(true);
    expect(hostRecs.every((h) => h.valid === 0)).toBe(true);

    // Their sockets were closed with a "banned" error, and they did not come back.
    for (const c of cheaters) {
      expect(c.logs.some((l) => /^server: banned: Banned until .*failed a spot-check/.test(l)), c.logs.join("\n")).toBe(true);
      expect(c.snapshot()).toMatchObject({ connection: "disconnected", lastError: expect.stringMatching(/^Banned until .*failed a spot-check/) });
      expect(c.connections).toBe(1);
      expect(coordinator.volunteers().some((v) => v.volunteerId === c.identity.volunteerId)).toBe(false);
    }
    expect(srv.logs.some((l) => l.startsWith("[coordinator] caught ") && l.includes(userAccount(mallory.user.id)) && l.endsWith(rec.banReason!))).toBe(true);

    // Reconnecting is refused: the same host, and a fresh host on the same account.
    for (const identity of [cheaters[0].identity, undefined]) {
      const again = await RawVolunteer.connect(srv.url, { identity, headers: { authorization: `Bearer ${mallory.apiKey}` } });
      again.hello(1);
      expect(await again.next("error")).toMatchObject({ code: "hello-refused", message: expect.stringMatching(/^banned until .*failed a spot-check/) });
      expect((await again.waitClosed()).code).toBe(1008);
    }

    // The honest volunteers were paid for their valid results, and only they were.
    for (const v of honest) {
      const account = v.snapshot().account!;
      const earned = settled.paidByAccount.get(account) ?? 0;
      expect(earned, `${v.name} was paid`).toBeGreaterThan(0);
      // The client hears of it in a "credit" message, sent once the payout is committed.
      await waitFor(() => v.snapshot().earned === earned, 5000, `${v.name} to be told what it earned`);
      expect(v.snapshot().invalid).toBe(0);
      expect(await balanceOf(db, account)).toBe(account === userAccount(alice.user.id) ? starter + earned : earned);
    }
    expect([...settled.paidByAccount.values()].reduce((s, x) => s + x, 0)).toBe(job.cost);
    expect(await balanceOf(db, userAccount(consumer.user.id))).toBe(starter - job.cost);
    expect(await auditLedger(db)).toMatchObject({ ok: true, total: 0 });
    coordinator.scheduler.audit();
  });

  it("shrugs off what a banned volunteer still sends while its socket closes", async () => {
    const { coordinator } = srv.deps;
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on("uncaughtException", onUncaught);
    try {
      const v = await RawVolunteer.connect(srv.url);
      // Its last words, sent the moment it hears of the ban, before it answers the close.
      v.ws.on("message", (data) => {
        const m = JSON.parse(data.toString()) as { type: string; code?: string };
        if (m.type !== "error" || m.code !== "banned") return;
        v.send({ type: "capacity", threads: 4 });
        v.send({ type: "results", results: [{ taskId: "nope#1", output: { inside: 1, samples: 2 } }] });
      });
      v.hello(1);
      await v.next("welcome");
      await trpc(srv.url, admin.apiKey).admin.ban.mutate({ id: hostKey(v.identity.volunteerId), hours: 1, reason: "last words" });
      expect(await v.waitClosed()).toEqual({ code: 1008, reason: "banned" });

      // The server carries on: a newcomer is welcomed, the banned one is gone, the books are straight.
      const w = await RawVolunteer.connect(srv.url);
      w.hello(1);
      await w.next("welcome");
      const online = coordinator.volunteers().map((c) => c.volunteerId);
      expect(online).toContain(w.identity.volunteerId);
      expect(online).not.toContain(v.identity.volunteerId);
      coordinator.scheduler.audit();
      await w.close();
      expect(uncaught).toEqual([]);
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });
});
