import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { auditLedger, balanceOf } from "../../server/services/credits/ledger";
import { MILLI, userAccount } from "../../server/services/credits/accounts";
import { hostKey } from "../../server/services/volunteers/reliability";
import { RawVolunteer, trpc } from "../helpers/clients";
import { Colluder } from "../helpers/colluders";
import { runTask } from "../../worker/runtime/runTask";
import { createUserWithKey, startTestServer, waitFor, type TestServer } from "../helpers/server";

// Ringers: tasks whose answer the server knows, mixed into a newcomer's real ones. A lone
// cheater, with nobody to compare it with, is caught by the first one it answers wrong; an
// honest newcomer passes it, which counts as its first spot-check.

describe("ringers", () => {
  let srv: TestServer;
  let consumer: Awaited<ReturnType<typeof createUserWithKey>>;
  const closers: Array<() => unknown> = [];

  beforeAll(async () => {
    srv = await startTestServer();
    await createUserWithKey(srv.deps, "root@example.com");
    consumer = await createUserWithKey(srv.deps, "consumer@example.com");
  });
  afterAll(async () => {
    for (const c of closers) await c();
    await srv?.close();
  });

  it("catch a lone cheater that nobody else could contradict, and it keeps nothing", async () => {
    const { db, coordinator, env } = srv.deps;
    const mallory = await createUserWithKey(srv.deps, "mallory@example.com");
    const api = trpc(srv.url, consumer.apiKey);
    const { id } = await api.jobs.submit.mutate({ kernel: "pi", chunks: 50, params: { samples: 50 * 100_000 }, replication: { replicas: 2 } });
    const cheater = await Colluder.connect(srv.url, { apiKey: mallory.apiKey, name: "lone", threads: 2 });
    // Whatever fails below, the cheater and its job are gone before the next test (a cheater
    // left answering would be the honest newcomer's second opinion there).
    onTestFinished(async () => {
      await cheater.close();
      await api.jobs.cancel.mutate({ id }).catch(() => undefined);
    });
    await waitFor(() => cheater.ban, 30_000, () => `the lone cheater to be banned (it got ${cheater.tasksReceived} tasks, sent ${cheater.sent}, heard ${JSON.stringify(cheater.errors)}; closed ${JSON.stringify(cheater.closed)}; job ${JSON.stringify(coordinator.progress(id))})`);
    // Its first frame held a ringer: it is banned before a second frame could come.
    expect(cheater.ban!.message).toMatch(/failed a spot-check: a known-answer pi task of job \w+ came back wrong/);
    expect(cheater.ban!.sent).toBeLessThanOrEqual(10);
    // Task ids carry no unit id: the ringer's looked like any other.
    for (const f of cheater.fakes) expect(f.taskId).toMatch(/^[a-z0-9]+\.[a-z0-9]+$/);
    await coordinator.drain();
    for (const key of [hostKey(cheater.volunteerId), userAccount(mallory.user.id)]) {
      const rec = await db.reliability.findUniqueOrThrow({ where: { id: key } });
      expect(rec.bannedUntil!.getTime()).toBeGreaterThan(Date.now() + (env.BAN_HOURS - 1) * 3600_000);
    }
    // Its results that were waiting for a replica are void; the job goes on without them.
    const rows = await db.result.findMany({ where: { jobId: id, volunteerId: cheater.volunteerId }, select: { state: true, paid: true } });
    for (const r of rows) expect(r).toEqual({ state: "invalid", paid: 0 });
    expect(await balanceOf(db, userAccount(mallory.user.id))).toBe(Math.round(env.STARTER_CREDITS * MILLI));
    expect(await db.job.findUniqueOrThrow({ where: { id }, select: { state: true } })).toEqual({ state: "running" });
    expect(coordinator.progress(id)).toMatchObject({ done: 0, pending: 0 });
    await api.jobs.cancel.mutate({ id });
    expect(await auditLedger(db)).toMatchObject({ ok: true });
    coordinator.scheduler.audit();
  });

  it("cannot be told from real tasks by a second socket's results for them", async () => {
    const api = trpc(srv.url, consumer.apiKey);
    const { id } = await api.jobs.submit.mutate({ kernel: "pi", chunks: 20, params: { samples: 20 * 100_000 }, replication: { replicas: 2 } });
    // A newcomer: its first frame holds a ringer among the job's tasks.
    const holder = await RawVolunteer.connect(srv.url);
    const prober = await RawVolunteer.connect(srv.url);
    closers.push(() => holder.close(), () => prober.close());
    holder.hello(4);
    prober.hello(0);
    await Promise.all([holder.next("welcome"), prober.next("welcome")]);
    const frame = await holder.next("tasks");
    const ringers = frame.tasks.filter((t) => srv.deps.coordinator.scheduler.task(t.taskId) === undefined);
    expect(ringers).toHaveLength(1);
    // Each of them answered from the other socket: every one reads as held by another.
    const ack = await prober.request({ type: "results", results: frame.tasks.map((t) => ({ taskId: t.taskId, output: { inside: 0, samples: 1 } })) }, "ack");
    expect(ack.rejected).toEqual(frame.tasks.map((t) => ({ taskId: t.taskId, reason: "not-holder" })));
    await api.jobs.cancel.mutate({ id });
  });

  it("are passed by an honest newcomer, which counts as its first spot-check", async () => {
    const { db, coordinator } = srv.deps;
    const alice = await createUserWithKey(srv.deps, "alice@example.com");
    const api = trpc(srv.url, consumer.apiKey);
    const { id } = await api.jobs.submit.mutate({ kernel: "pi", chunks: 20, params: { samples: 20 * 100_000 }, replication: { replicas: 2 } });
    const v = await RawVolunteer.connect(srv.url, { headers: { authorization: `Bearer ${alice.apiKey}` } });
    closers.push(() => v.close());
    v.hello(2);
    await v.next("welcome");
    // Honest: computes every task it gets (the ringer among them), in one frame.
    const frame = await v.next("tasks");
    const results = frame.tasks.map((t) => ({ taskId: t.taskId, ...runTask(t) }));
    v.send({ type: "results", results });
    expect((await v.next("ack")).accepted.sort()).toEqual(frame.tasks.map((t) => t.taskId).sort());
    // The ringer takes one of the window's places (2 per thread): the frame looks as usual.
    expect(frame.tasks.length).toBe(4);
    await waitFor(() => (coordinator.scheduler.hostRecord(v.identity.volunteerId)?.spotChecks ?? 0) >= 1, 30_000, "the ringer to be checked");
    expect(coordinator.scheduler.onProbation(coordinator.volunteers().find((c) => c.volunteerId === v.identity.volunteerId)!.key)).toBe(false);
    await coordinator.drain();
    const rec = await db.reliability.findUniqueOrThrow({ where: { id: hostKey(v.identity.volunteerId) } });
    expect(rec).toMatchObject({ spotChecks: 1, bannedUntil: null });
    // The ringer is no result of the job: only the real tasks were stored.
    expect(await db.result.count({ where: { jobId: id, volunteerId: v.identity.volunteerId } })).toBe(3);
    await api.jobs.cancel.mutate({ id });
  });
});
