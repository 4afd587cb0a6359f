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
