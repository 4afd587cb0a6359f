import { describe, expect, it } from "vitest";
import { rawArena } from "../helpers/arena";
import { trpc } from "../helpers/clients";
import { computeLocally } from "../helpers/fleet";
import { createUserWithKey, waitFor } from "../helpers/server";

// Three free anonymous ids that answered every task with an error failed a consumer's pi job
// in 0.3 s, with honest volunteers online: a unit failed on 3 hosts fails its job, and a host
// is a free id. A kernel the server runs itself is now computed by the server once its errors
// reach the limit, and the job goes on.
describe("volunteers that answer every task with an error", () => {
  const arena = rawArena({});
  const open = (threads: number) => arena.open(threads);

  it("do not fail a job of a built-in kernel: the server computes the units they errored on, and the job completes right", async () => {
    const { srv } = arena;
    const consumer = await createUserWithKey(srv.deps, "errors@example.com");
    const liars = [await open(4), await open(4), await open(4)];
    const { id } = await trpc(srv.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: 12, params: { samples: 12 * 1000, seed: 5 }, replication: { replicas: 1, adaptive: false },
    });
    const honest = await open(2);
    let errors = 0;
    await waitFor(async () => {
      honest.answerNew();
      for (const v of liars) errors += v.answerNew((t) => ({ taskId: t.taskId, error: "nope" }));
      const job = await trpc(srv.url, consumer.apiKey).jobs.get.query({ id });
      return job.state !== "running";
    }, 30_000, "the job to end", 20);
    const job = await trpc(srv.url, consumer.apiKey).jobs.get.query({ id });
    expect(errors).toBeGreaterThanOrEqual(3);
    expect(job).toMatchObject({ state: "completed", error: null });
    // Exactly what the job computes on one machine: the server's units are the kernel's own.
    expect(await trpc(srv.url, consumer.apiKey).jobs.result.query({ id })).toEqual(computeLocally("pi", { samples: 12 * 1000, seed: 5 }, 12).result);
  }, 45_000);
});

describe("free ids that answer every task of a program with an error", () => {
  // A server of their own: the sockets of the block above hold units and never answer.
  const arena = rawArena({});
  const open = (threads: number) => arena.open(threads);

  // The server does not run a consumer's program, so its errors still fail a job: three free
  // ids failed anyone's program job at once. Ids without a valid result count once per network.
  it("do not fail its job from one network: an honest volunteer computes it", async () => {
    const { srv } = arena;
    const consumer = await createUserWithKey(srv.deps, "program-errors@example.com");
    const upload = await fetch(`${srv.url}/api/programs?name=echo.js`, { method: "POST", headers: { authorization: `Bearer ${consumer.apiKey}` }, body: "export function run(input) { return input; }" });
    expect(upload.status).toBe(201);
    const program = ((await upload.json()) as { hash: string }).hash;
    const liars = [await open(4), await open(4), await open(4), await open(4)];
    const { id } = await trpc(srv.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "program", program, input: { mode: "json", items: [0, 1, 2, 3, 4, 5] }, replication: { replicas: 1, adaptive: false },
    } as never);
    let errors = 0;
    await waitFor(() => {
      for (const v of liars) errors += v.answerNew((t) => ({ taskId: t.taskId, error: "nope" }));
      return errors >= 12;
    }, 10_000, "four free ids to answer units with errors", 20);
    expect((await trpc(srv.url, consumer.apiKey).jobs.get.query({ id })).state).toBe("running");
    const honest = await open(2);
    await waitFor(async () => {
      for (const v of liars) errors += v.answerNew((t) => ({ taskId: t.taskId, error: "nope" }));
      honest.answerNew((t) => ({ taskId: t.taskId, output: (t.input as { value: number }).value }));
      return (await trpc(srv.url, consumer.apiKey).jobs.get.query({ id })).state !== "running";
    }, 30_000, "the job to end", 20);
    expect(await trpc(srv.url, consumer.apiKey).jobs.get.query({ id })).toMatchObject({ state: "completed", error: null });
    expect(await trpc(srv.url, consumer.apiKey).jobs.result.query({ id })).toEqual([0, 1, 2, 3, 4, 5]);
  }, 45_000);
});

describe("free ids that earned a valid result each, then answer with errors", () => {
  const arena = rawArena({});
  const open = (threads: number) => arena.open(threads);

  // A valid result each made three free ids three voices: their errors then failed a job whose
  // units are too long for the server to compute (over 5 s of work) in under 2 s.
  it("do not fail a job the server cannot compute either", async () => {
    const { srv } = arena;
    const consumer = await createUserWithKey(srv.deps, "long-units@example.com");
    const api = trpc(srv.url, consumer.apiKey);
    const liars = [await open(1), await open(1), await open(1)];
    const warm = await api.jobs.submit.mutate({ kernel: "pi", chunks: 3, params: { samples: 3000, seed: 1 }, replication: { replicas: 1, adaptive: false } });
    await waitFor(async () => {
      for (const v of liars) v.answerNew();
      return (await api.jobs.get.query({ id: warm.id })).state === "completed";
    }, 10_000, "the three ids to earn a valid result each", 20);
    const records = await srv.deps.db.reliability.findMany({ where: { id: { in: liars.map((v) => `host:${v.identity.volunteerId}`) } } });
    expect(records.filter((r) => r.valid > 0)).toHaveLength(3);
    const { id } = await api.jobs.submit.mutate({ kernel: "pi", chunks: 2, params: { samples: 2_000_000_000, seed: 2 }, replication: { replicas: 1, adaptive: false } });
    let errors = 0;
    await waitFor(() => {
      for (const v of liars) errors += v.answerNew((t) => ({ taskId: t.taskId, error: "out of memory" }));
      return errors >= 6;
    }, 10_000, "each id to answer both units with an error", 20);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await api.jobs.get.query({ id })).toMatchObject({ state: "running" });
    await api.jobs.cancel.mutate({ id });
  }, 45_000);
});
