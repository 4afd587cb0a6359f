import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUserWithKey, startCliVolunteer, startTestServer, waitFor, type CliVolunteer, type TestServer } from "../helpers/server";
import { trpc } from "../helpers/clients";

// The server's sandbox threads (programs' reduces and steps) are few. An account whose
// reduces spin until their time limit (the job's, up to an hour) held every one of them for
// the price of two one-unit jobs: every other account's merges and comparator uploads waited,
// and a cancel did not stop them.
describe("the server's sandbox threads under a spinning reduce", () => {
  let srv: TestServer;
  let volunteer: CliVolunteer;
  let attacker: Awaited<ReturnType<typeof createUserWithKey>>;
  let honest: Awaited<ReturnType<typeof createUserWithKey>>;

  const upload = (key: string, source: string, name: string) =>
    fetch(`${srv.url}/api/programs?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: source });
  const state = async (key: string, id: string) => (await trpc(srv.url, key).jobs.get.query({ id })).state;

  beforeAll(async () => {
    // The server's own cap on a run (30 s) must not end the spinning reduces before the test
    // cancels them on a slow machine: it failed them first in CI.
    srv = await startTestServer({ SERVER_PROGRAM_MAX_SECONDS: "600" });
    attacker = await createUserWithKey(srv.deps, "spinner@example.com");
    honest = await createUserWithKey(srv.deps, "honest@example.com");
    volunteer = startCliVolunteer(srv.url, 2, { dir: srv.dir });
    await waitFor(() => srv.deps.coordinator.volunteers().length === 1, 30_000, "a volunteer");
  });
  afterAll(async () => {
    await volunteer?.stop();
    await srv?.close();
  });

  it("shares them between accounts, keeps uploads apart, and stops a cancelled job's reduce", async () => {
    const spin = await (await upload(attacker.apiKey, "export function run(x) { return x; }\nexport function reduce() { while (true) {} }\n", "spin.js")).json();
    const submit = (key: string, program: string, extra: Record<string, unknown> = {}) =>
      trpc(srv.url, key).jobs.submit.mutate({
        kernel: "program", program, input: { mode: "range", start: 0, end: 2 }, chunks: 1, merge: "reduce", cpuSecondsPerUnit: 0.001,
        replication: { replicas: 1, adaptive: false }, ...extra,
      } as never);
    const unitDone = async (id: string) => (await trpc(srv.url, attacker.apiKey).jobs.get.query({ id })).progress.done === 1;
    // The first job's reduce runs; the second's waits for it (an account runs one at a time).
    const spinning = [await submit(attacker.apiKey, spin.hash, { timeLimitSeconds: 3600 })];
    await waitFor(() => unitDone(spinning[0].id), 30_000, "the first spinning job's unit");
    spinning.push(await submit(attacker.apiKey, spin.hash, { timeLimitSeconds: 3600 }));
    await waitFor(() => unitDone(spinning[1].id), 30_000, "the second spinning job's unit");

    // Another account's merge gets a thread at once, not after the attacker's reduces.
    const sum = await (await upload(honest.apiKey, "export function run() { return 20; }\nexport function reduce(outs) { return outs.reduce((a, b) => a + b, 1); }\n", "sum.js")).json();
    const mine = await submit(honest.apiKey, sum.hash);
    await waitFor(async () => (await state(honest.apiKey, mine.id)) !== "running", 20_000, "the honest job's merge");
    expect(await state(honest.apiKey, mine.id)).toBe("completed");
    expect(await trpc(srv.url, honest.apiKey).jobs.result.query({ id: mine.id })).toBe(21);

    // A comparator is read at upload in a slot of its own.
    const t0 = Date.now();
    const withComparator = await upload(honest.apiKey, "export const comparator = { kind: \"tolerance\", relative: 1e-9, absolute: 0 };\nexport function run(x) { return x; }\n", "cmp.js");
    expect(withComparator.status).toBe(201);
    expect(Date.now() - t0).toBeLessThan(10_000);

    // Cancelling stops a reduce waiting its turn (it waited for the account's other run to end),
    // and one under way: the jobs end cancelled now.
    for (const j of [spinning[1], spinning[0]]) {
      const before = await trpc(srv.url, attacker.apiKey).jobs.get.query({ id: j.id });
      expect({ state: before.state, error: before.error }).toEqual({ state: "running", error: null });
      const t = Date.now();
      const after = await trpc(srv.url, attacker.apiKey).jobs.cancel.mutate({ id: j.id });
      expect(after.state).toBe("cancelled");
      expect(Date.now() - t).toBeLessThan(10_000);
    }
  }, 90_000);

  it("stops a cancelled iterative job's step at once, on the kept thread or a one-shot one; a submission's first step waits for a thread 5 s at most", async () => {
    const source = "export function run(x) { return 1; }\nexport function step(merged, state, ctx) { if (ctx.round === 0) return { next: 1, state: 0 }; while (true) {} }\n";
    const spin = await (await upload(attacker.apiKey, source, "spinstep.js")).json();
    const api = trpc(srv.url, attacker.apiKey);
    const submit = () => api.jobs.submit.mutate({
      kernel: "program", program: spin.hash, input: { mode: "range", start: 0, end: 2 }, chunks: 1, rounds: 3, cpuSecondsPerUnit: 0.001,
      replication: { replicas: 1, adaptive: false }, timeLimitSeconds: 3600,
    } as never);
    const unitDone = async (id: string) => (await api.jobs.get.query({ id })).unitsDone === 1;
    // The first job's step takes the kept step thread, the second's a one-shot thread (the kept
    // one is busy); the account's third submission's first step waits for that one, and gives up.
    const jobs: Array<{ id: string }> = [];
    for (let i = 0; i < 2; i++) {
      jobs.push(await submit());
      await waitFor(() => unitDone(jobs[i].id), 30_000, "a spinning job's round 1");
    }
    await expect(submit()).rejects.toThrow("The server's program sandboxes are busy (with your own programs' steps and reduces, or others'): submit again in a few seconds.");
    for (const j of jobs) {
      const t = Date.now();
      expect((await api.jobs.cancel.mutate({ id: j.id })).state).toBe("cancelled");
      expect(Date.now() - t).toBeLessThan(10_000);
    }
    // The threads are free again: the account's next job runs its rounds.
    const ok = await (await upload(attacker.apiKey, "export function run(x) { return [1]; }\nexport function step(merged, state, ctx) { return ctx.round < 2 ? { next: ctx.round, state: ctx.round } : { done: true, result: merged }; }\n", "ok.js")).json();
    const job = await api.jobs.submit.mutate({
      kernel: "program", program: ok.hash, input: { mode: "range", start: 0, end: 2 }, chunks: 1, rounds: 3, merge: "mean", cpuSecondsPerUnit: 0.001,
      replication: { replicas: 1, adaptive: false },
    } as never);
    await waitFor(async () => (await api.jobs.get.query({ id: job.id })).state !== "running", 30_000, "the next job");
    expect((await api.jobs.get.query({ id: job.id })).error ?? "completed").toBe("completed");
    expect(await api.jobs.result.query({ id: job.id })).toEqual([1]);
  }, 90_000);
});

describe("the server's cap on one run of a program", () => {
  let srv: TestServer;
  let volunteer: CliVolunteer;
  beforeAll(async () => {
    srv = await startTestServer({ SERVER_PROGRAM_MAX_SECONDS: "2" });
    volunteer = startCliVolunteer(srv.url, 1, { dir: srv.dir });
    await waitFor(() => srv.deps.coordinator.volunteers().length === 1, 30_000, "a volunteer");
  });
  afterAll(async () => {
    await volunteer?.stop();
    await srv?.close();
  });

  it("fails a job whose reduce outlives it, whatever the job's own limit", async () => {
    const user = await createUserWithKey(srv.deps, "spinner@example.com");
    const res = await fetch(`${srv.url}/api/programs?name=spin.js`, {
      method: "POST", headers: { authorization: `Bearer ${user.apiKey}` },
      body: "export function run(x) { return x; }\nexport function reduce() { while (true) {} }\n",
    });
    const spin = await res.json();
    const client = trpc(srv.url, user.apiKey);
    const job = await client.jobs.submit.mutate({
      kernel: "program", program: spin.hash, input: { mode: "range", start: 0, end: 2 }, chunks: 1, merge: "reduce",
      cpuSecondsPerUnit: 0.001, replication: { replicas: 1, adaptive: false }, timeLimitSeconds: 3600,
    } as never);
    const t0 = Date.now();
    await waitFor(async () => (await client.jobs.get.query({ id: job.id })).state !== "running", 30_000, "the job to end");
    const ended = await client.jobs.get.query({ id: job.id });
    expect(ended.state).toBe("failed");
    expect(ended.error).toMatch(/time limit/i);
    expect(Date.now() - t0).toBeLessThan(25_000);
  }, 60_000);
});
