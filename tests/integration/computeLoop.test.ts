import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditLedger, balanceOf } from "../../server/services/credits/ledger";
import { anonAccount, escrowAccount, MILLI, userAccount } from "../../server/services/credits/accounts";
import { RawVolunteer, trpc } from "../helpers/clients";
import {
  createUserWithKey, runCli, startCliVolunteer, startTestServer, waitFor, waitForVolunteer,
  type CliVolunteer, type TestServer,
} from "../helpers/server";
import { expectSettledJob } from "../helpers/settlement";

// 40 units of 10M samples: ~50 ms of CPU each, computed twice (two replicas), ~4 CPU-seconds
// in all, so with three single-thread volunteers on two cores the job runs for a few seconds:
// long enough to kill a volunteer in the middle of it.
const CHUNKS = 40;
const SAMPLES = 400_000_000;

describe("the compute loop: CLI consumer, three headless volunteers, one killed mid-job", () => {
  let srv: TestServer;
  const volunteers: CliVolunteer[] = [];

  beforeAll(async () => {
    srv = await startTestServer();
  });

  afterAll(async () => {
    await Promise.all(volunteers.map((v) => v.stop()));
    await srv?.close();
  });

  it("completes a pi job correctly with two agreeing replicas per unit, re-queues the dead volunteer's leases and balances the books", async () => {
    const { db, coordinator, env } = srv.deps;
    const { user, apiKey } = await createUserWithKey(srv.deps, "consumer@example.com");
    const starter = Math.round(env.STARTER_CREDITS * MILLI);
    expect(await balanceOf(db, userAccount(user.id))).toBe(starter);

    // Three anonymous volunteers (no API key), as separate processes.
    for (let i = 0; i < 3; i++) volunteers.push(startCliVolunteer(srv.url, 1, { dir: srv.dir, name: `vol-${i}` }));
    const conns = await Promise.all(volunteers.map((v) => waitForVolunteer(srv.deps, v.identity.volunteerId)));
    for (const c of conns) expect(c).toMatchObject({ userId: null, agent: "node", threads: 1 });
    const ids = volunteers.map((v) => v.identity.volunteerId);

    // Default replication (two replicas, quorum of two). Adaptive replication is off so that
    // every unit really is computed twice: with it, a volunteer with ten valid results in a
    // row may compute units alone, which this job (27 results per volunteer) would reach.
    const submit = runCli(
      ["submit", "pi", "--chunks", String(CHUNKS), "--params", JSON.stringify({ samples: SAMPLES }), "--no-adaptive", "--wait", "--json", "--url", srv.url],
      { TABGRID_API_KEY: apiKey },
    );

    const job = await waitFor(() => db.job.findFirst({ where: { ownerId: user.id }, select: { id: true } }), 20_000, "the job row");

    // Kill one volunteer once some units are validated, while it holds a full window of leases.
    const victim = volunteers[0];
    const victimId = victim.identity.volunteerId;
    const atKill = await waitFor(
      () => {
        const p = coordinator.progress(job.id);
        const v = coordinator.volunteers().find((c) => c.volunteerId === victimId);
        if (!p || !v || p.done < 3 || v.held < 2) return undefined;
        const held = coordinator.scheduler.heldBy(v.key).map((t) => coordinator.scheduler.task(t)!.unitId);
        return { done: p.done, key: v.key, held };
      },
      30_000,
      "some units done and the victim holding leases",
      5,
    );
    victim.kill("SIGKILL");
    expect(atKill.done).toBeGreaterThanOrEqual(3);
    expect(atKill.done).toBeLessThan(CHUNKS);
    expect(atKill.held.length).toBeGreaterThanOrEqual(2);

    // The server notices the dropped socket and puts the victim's leases back in the queue.
    const left = await waitFor(
      () => srv.logs.find((l) => l.includes(`volunteer ${atKill.key} left;`)),
      10_000,
      "the server to drop the killed volunteer",
    );
    const requeued = Number(/left; (\d+) task\(s\) re-queued/.exec(left)?.[1]);
    expect(requeued).toBeGreaterThanOrEqual(1);
    await victim.exited;
    expect(victim.signalCode).toBe("SIGKILL");

    const res = await submit;
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    const out = JSON.parse(res.stdout.trim());
    expect(out).toMatchObject({
      id: job.id, status: "completed", kernel: "pi", chunks: CHUNKS, done: CHUNKS, error: null,
      replication: { replicas: 2, quorum: 2, adaptive: false },
      results: { valid: 2 * CHUNKS, invalid: 0, errors: 0, pending: 0 },
    });
    expect(Math.abs(out.result.estimate - Math.PI)).toBeLessThan(0.001);
    expect(out.result.samples).toBe(SAMPLES);
    expect(out.result.inside).toBe(Math.round((out.result.estimate * SAMPLES) / 4));

    // Results are acknowledged before the job is finished in the same or a later batch.
    await coordinator.drain();
    const row = await db.job.findUniqueOrThrow({ where: { id: job.id } });
    expect(row).toMatchObject({ state: "completed", unitsDone: CHUNKS, replicas: 2, quorum: 2 });
    expect(row.finishedAt).not.toBeNull();

    // Every unit was validated by exactly two agreeing results from two different volunteers
    // (of ours), each paid once; the job's result merges the validated outputs.
    const settled = await expectSettledJob(db, job.id, { exactQuorum: true });
    expect(settled.units).toHaveLength(CHUNKS);
    expect(settled.results).toHaveLength(2 * CHUNKS);
    for (const r of settled.results) {
      expect(r.state).toBe("valid");
      expect(ids).toContain(r.volunteerId);
      expect(r.accountId).toBe(anonAccount(r.volunteerId));
    }
    expect(settled.units.reduce((s, u) => s + JSON.parse(u.output!).inside, 0)).toBe(out.result.inside);
    const hostsOf = (unitId: string) => settled.results.filter((r) => r.unitId === unitId).map((r) => r.volunteerId);

    const vrows = await db.volunteer.findMany({ where: { id: { in: ids } }, select: { id: true, tasksDone: true, earned: true, userId: true } });
    expect(vrows).toHaveLength(3);
    expect(vrows.reduce((s, v) => s + v.tasksDone, 0)).toBe(2 * CHUNKS);
    for (const v of vrows) {
      expect(v.userId).toBeNull();
      const mine = settled.results.filter((r) => r.volunteerId === v.id);
      expect(v.tasksDone).toBe(mine.length);
      expect(v.earned).toBe(mine.reduce((s, r) => s + r.paid, 0));
    }
    // Each host's and account's reliability row counts exactly its valid results, though its
    // rows are written once per commit batch for all of its verdicts in it.
    const records = await db.reliability.findMany({ where: { id: { in: [...ids.map((id) => `host:${id}`), ...ids.map(anonAccount)] } } });
    for (const v of vrows.filter((v) => v.tasksDone > 0)) {
      for (const id of [`host:${v.id}`, anonAccount(v.id)]) {
        expect(records.find((r) => r.id === id), id).toMatchObject({ valid: v.tasksDone, invalid: 0 });
      }
    }
    // The units the victim held when it died were computed again, by the two survivors (at
    // most the one it was computing could have reached the server before the kill).
    const redone = atKill.held.filter((unitId) => !hostsOf(unitId).includes(victimId));
    expect(redone.length).toBeGreaterThanOrEqual(atKill.held.length - 1);
    const survivors = ids.slice(1);
    for (const unitId of redone) expect(hostsOf(unitId).sort()).toEqual([...survivors].sort());

    // Money: the consumer paid exactly the payouts (two per unit), escrow is empty, volunteers hold the rest.
    const audit = await auditLedger(db);
    expect(audit).toMatchObject({ ok: true, total: 0, unbalancedTx: [], driftedAccounts: [], negativeAccounts: [] });
    const unitPay = settled.units.reduce((s, u) => s + u.pay, 0);
    expect(row.cost).toBe(2 * unitPay);
    expect(row.cost).toBe(row.estimate);
    expect(out.cost).toBeCloseTo(row.cost / MILLI, 6);
    const payouts = await db.ledgerEntry.aggregate({ where: { jobId: job.id, kind: "payout", amount: { gt: 0 } }, _sum: { amount: true } });
    expect(payouts._sum.amount).toBe(row.cost);
    expect(await balanceOf(db, escrowAccount(job.id))).toBe(0);
    expect(await balanceOf(db, userAccount(user.id))).toBe(starter - row.cost);

    const anon = await db.account.findMany({ where: { kind: "anon" }, select: { id: true, balance: true } });
    expect(anon.map((a) => a.id).sort()).toEqual(vrows.filter((v) => v.tasksDone > 0).map((v) => anonAccount(v.id)).sort());
    expect(anon.reduce((s, a) => s + a.balance, 0)).toBe(row.cost);
    for (const v of vrows) expect(await balanceOf(db, anonAccount(v.id))).toBe(v.earned);
    const survivorsHeld = await Promise.all(survivors.map((id) => balanceOf(db, anonAccount(id))));
    expect(survivorsHeld.every((b) => b > 0)).toBe(true);

    // The survivors are still connected and idle; the victim is gone.
    const online = coordinator.volunteers().map((v) => v.volunteerId);
    expect(online.sort()).toEqual([...survivors].sort());
    expect(coordinator.status()).toMatchObject({ tasksQueued: 0, tasksRunning: 0, jobsRunning: 0 });
  });
});

describe("a volunteer that goes silent", () => {
  let srv: TestServer;
  const cleanups: Array<() => unknown> = [];

  beforeAll(async () => {
    // A hand-driven volunteer counts its tasks exactly: no ringers or probation (see attack.*.test.ts).
    srv = await startTestServer({ LEASE_SECONDS: "1", SPOT_CHECKS: "off" });
  });

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    await srv?.close();
  });

  it("loses its leases at the deadline; another volunteer finishes the job and the late results are refused unpaid", async () => {
    const { db, coordinator } = srv.deps;
    const { apiKey } = await createUserWithKey(srv.deps, "consumer@example.com");

    // Takes both units, then asks for nothing more and never answers: its socket stays open.
    const silent = await RawVolunteer.connect(srv.url);
    cleanups.push(() => silent.close());
    silent.hello(1);
    await silent.next("welcome");
    // One replica: this is about the lease deadline, and the silent volunteer's host may not
    // take a second replica of the units it sits on.
    const job = await trpc(srv.url, apiKey).jobs.submit.mutate({ kernel: "pi", chunks: 2, params: { samples: 2_000_000 }, replication: { replicas: 1 } });
    await waitFor(() => silent.tasks().length === 2, 5000, "the silent volunteer to get both units");
    const taken = silent.tasks();
    expect(taken.every((t) => t.deadline - Date.now() <= 1000)).toBe(true);
    silent.send({ type: "capacity", threads: 0 });

    const worker = startCliVolunteer(srv.url, 1, { dir: srv.dir, name: "diligent" });
    cleanups.push(() => worker.stop());

    const revoke = await silent.next("revoke", 0, 10_000);
    expect(revoke.reason).toBe("lease deadline passed");
    expect([...revoke.taskIds].sort()).toEqual(taken.map((t) => t.taskId).sort());
    expect(srv.logs).toContain("[coordinator] 2 lease(s) expired");
    await waitFor(
      async () => (await db.job.findUnique({ where: { id: job.id }, select: { state: true } }))?.state === "completed",
      20_000,
      "the job to complete",
    );
    await coordinator.drain();

    const late = await silent.request(
      { type: "results", results: taken.map((t) => ({ taskId: t.taskId, output: { inside: 785_000, samples: 1_000_000 } })) },
      "ack",
    );
    expect(late).toEqual({ type: "ack", accepted: [], rejected: taken.map((t) => ({ taskId: t.taskId, reason: "unknown-task" })) });
    await coordinator.drain();
    expect(silent.messages.filter((m) => m.type === "credit")).toEqual([]);
    expect(silent.tasks()).toHaveLength(2);

    const units = await db.workUnit.findMany({ where: { jobId: job.id }, select: { volunteerId: true } });
    expect(units.map((u) => u.volunteerId)).toEqual([worker.identity.volunteerId, worker.identity.volunteerId]);
    const row = await db.job.findUniqueOrThrow({ where: { id: job.id } });
    expect(await balanceOf(db, anonAccount(worker.identity.volunteerId))).toBe(row.cost);
    expect(await balanceOf(db, anonAccount(silent.identity.volunteerId))).toBe(0);
    expect(await db.result.count({ where: { volunteerId: silent.identity.volunteerId } })).toBe(0);
    await expectSettledJob(db, job.id, { exactQuorum: true });
    expect((await auditLedger(db)).ok).toBe(true);
  });
});
