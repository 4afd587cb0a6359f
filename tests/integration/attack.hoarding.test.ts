import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rawArena } from "../helpers/arena";
import { RawVolunteer, trpc } from "../helpers/clients";
import { createUserWithKey, sleep, startTestServer, waitFor, type TestServer } from "../helpers/server";

// Two sockets that said 256 threads and never answered held 166 of a job's 200 copies (a
// window is two tasks a thread, taken on trust), and took them again as their leases lapsed:
// the job made no progress. A socket's window now starts at 8 tasks and grows only with the
// results it returns; an id that let leases lapse, or left holding tasks it never answered,
// starts its next socket from 2.
describe("a volunteer that takes tasks and never answers", () => {
  let srv: TestServer;
  const sockets: RawVolunteer[] = [];

  beforeAll(async () => {
    srv = await startTestServer({ SPOT_CHECKS: "off", LEASE_SECONDS: "3" });
  });
  afterAll(async () => {
    for (const s of sockets) await s.close().catch(() => undefined);
    await srv?.close();
  });

  const connect = async (threads: number) => {
    const v = await RawVolunteer.welcomed(srv.url, threads);
    sockets.push(v);
    return v;
  };
  /** A consumer's job of 100 small units, and a fresh socket saying 256 threads holding its first window. */
  const firstWindowOfAJob = async (email: string) => {
    const consumer = await createUserWithKey(srv.deps, email);
    const { id } = await trpc(srv.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: 100, params: { samples: 100 * 1000 }, replication: { replicas: 1, adaptive: false },
    });
    const first = await connect(256);
    await waitFor(() => first.tasks().length === 8, 10_000, "the first window");
    return { consumer, id, first };
  };
  /** Another socket of the same volunteer id, saying 256 threads. */
  const sameId = async (v: RawVolunteer) => {
    const next = await RawVolunteer.welcomed(srv.url, 256, { identity: v.identity });
    sockets.push(next);
    return next;
  };

  it("holds its first window at most, while one that answers is given more as it does, and the job completes", async () => {
    const consumer = await createUserWithKey(srv.deps, "consumer@example.com");
    const hoarders = [await connect(256), await connect(256)];
    const { id } = await trpc(srv.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: 400, params: { samples: 400 * 1000 }, replication: { replicas: 1, adaptive: false },
    });
    await waitFor(() => hoarders.every((h) => h.tasks().length === 8), 10_000, "each hoarder's first window");
    const handedOut = Date.now();

    const worker = await connect(256);
    let mostHeld = 0;
    await waitFor(async () => {
      mostHeld = Math.max(mostHeld, worker.answerNew());
      return (await trpc(srv.url, consumer.apiKey).jobs.get.query({ id })).progress.done === 400 - 16;
    }, 30_000, "every unit the hoarders do not hold", 10);
    // Its window grew past the first one as its results came back.
    expect(mostHeld).toBeGreaterThan(8);
    await sleep(200);
    // The hoarders were given nothing more, until their leases lapsed (3 s): then two tasks
    // each, not another 8, and the worker computes the rest.
    await waitFor(async () => {
      worker.answerNew();
      return (await trpc(srv.url, consumer.apiKey).jobs.get.query({ id })).state === "completed";
    }, 30_000, "the job to complete", 10);
    // Not before the leases lapsed, 3 s from their hand-out (which came a poll before handedOut).
    // Timed from the worker's last unit instead, a slow machine's worker took past the lapse itself.
    expect(Date.now() - handedOut).toBeGreaterThan(2900);
    const { scheduler } = srv.deps.coordinator;
    for (const h of hoarders) {
      expect(h.messages.some((m) => m.type === "revoke")).toBe(true);
      expect(h.tasks().length).toBeLessThanOrEqual(8 + 2 * 4);
      // Its window is two now, whatever it holds.
      const key = srv.deps.coordinator.volunteers().find((v) => v.volunteerId === h.identity.volunteerId)!.key;
      expect(scheduler.freeSlots(key) + scheduler.heldBy(key).length).toBe(2);
    }
  }, 60_000);

  it("gives a second socket of an id with no valid result a window of two, while its first holds its eight", async () => {
    const { consumer, id, first } = await firstWindowOfAJob("consumer3@example.com");
    const second = await sameId(first);
    await waitFor(() => second.tasks().length === 2, 10_000, "the second socket's two tasks");
    await sleep(300);
    expect(second.tasks()).toHaveLength(2);
    await Promise.all([first.close(), second.close()]);
    await trpc(srv.url, consumer.apiKey).jobs.cancel.mutate({ id });
  });

  it("gives an id that left holding tasks it never answered a window of two on its next socket, until it answers", async () => {
    const { consumer, id, first } = await firstWindowOfAJob("consumer2@example.com");
    // It leaves before its leases lapse, and comes back as the same id: two tasks, not eight.
    await first.close();
    const again = await sameId(first);
    await waitFor(() => again.tasks().length === 2, 10_000, "the second socket's two tasks");
    await sleep(300);
    expect(again.tasks()).toHaveLength(2);
    // Once it answers, it is given more as it goes, and its id is forgiven.
    await waitFor(async () => {
      again.answerNew();
      return (await trpc(srv.url, consumer.apiKey).jobs.get.query({ id })).state === "completed";
    }, 30_000, "the job to complete", 10);
    expect(srv.deps.coordinator.volunteers().find((v) => v.volunteerId === first.identity.volunteerId)).toBeDefined();
  }, 60_000);
});

// With leases of a minute, sockets that take a first window and never answer held a small
// job's last units for that minute, while a volunteer that answers sat idle. Once nothing of
// the job is queued, such units are copied to it after QUIET_MIN_MS of silence (quiet.ts).
describe("units held by quiet sockets while others wait", () => {
  const arena = rawArena({ SPOT_CHECKS: "off" });

  it("are copied to a volunteer that answers, and the job completes long before the leases lapse", async () => {
    const { srv } = arena;
    const consumer = await createUserWithKey(srv.deps, "quiet@example.com");
    const { id } = await trpc(srv.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: 60, params: { samples: 60 * 1000 }, replication: { replicas: 1, adaptive: false },
    });
    const hoarders = [await arena.open(256), await arena.open(256)];
    await waitFor(() => hoarders.every((h) => h.tasks().length === 8), 10_000, "each quiet socket's first window");
    const leasedAt = Date.now();
    expect(hoarders[0]!.tasks()[0]!.deadline - leasedAt).toBeGreaterThan(30_000);

    const worker = await arena.open(4);
    let answered = 0;
    await waitFor(async () => {
      answered += worker.answerNew();
      return (await trpc(srv.url, consumer.apiKey).jobs.get.query({ id })).state === "completed";
    }, 25_000, "the job to complete", 20);
    const took = Date.now() - leasedAt;
    // Not before the quiet time (the copies waited for it), and well before the leases' end.
    expect(took).toBeGreaterThan(9_000);
    expect(took).toBeLessThan(25_000);
    expect(answered).toBe(60);
    const { scheduler } = srv.deps.coordinator;
    for (const h of hoarders) {
      // Its units were revoked as the copies came back, and it starts again from a window of two.
      expect(h.messages.filter((m) => m.type === "revoke").length).toBeGreaterThan(0);
      const key = srv.deps.coordinator.volunteers().find((v) => v.volunteerId === h.identity.volunteerId)!.key;
      expect(scheduler.freeSlots(key) + scheduler.heldBy(key).length).toBe(2);
    }
  }, 45_000);
});

// The same with the trust policy on (spot-checks, probation) and two copies a unit: the quiet
// socket holds the second copies of the honest newcomers' units, which are copied to the other
// newcomer. (Past their first checks, newcomers' results count against their windows until
// decided; copies of units holding results are taken past that, as leaseFrom's are.)
describe("units held by quiet sockets, with two honest newcomers on probation", () => {
  const arena = rawArena({});
  const open = (threads: number) => arena.open(threads);

  it("are copied to them, so that their own results are decided, long before the leases lapse", async () => {
    const { srv } = arena;
    const consumer = await createUserWithKey(srv.deps, "probation@example.com");
    const { id } = await trpc(srv.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: 30, params: { samples: 30 * 1000 }, replication: { replicas: 2, adaptive: false },
    });
    // Each newcomer takes first copies; a quiet socket then takes their second copies.
    const workers = [await open(2)];
    await waitFor(() => workers[0]!.tasks().length > 0, 10_000, "the first newcomer's tasks");
    workers.push(await open(2));
    await waitFor(() => workers[1]!.tasks().length > 0, 10_000, "the second newcomer's tasks");
    const hoarder = await open(256);
    await waitFor(() => hoarder.tasks().length === 8, 10_000, "the quiet socket's first window");
    const leasedAt = Date.now();
    await waitFor(async () => {
      for (const w of workers) w.answerNew();
      return (await trpc(srv.url, consumer.apiKey).jobs.get.query({ id })).state === "completed";
    }, 30_000, "the job to complete", 20);
    expect(Date.now() - leasedAt).toBeLessThan(30_000);
    expect(hoarder.messages.filter((m) => m.type === "revoke").length).toBeGreaterThan(0);
  }, 50_000);
});
