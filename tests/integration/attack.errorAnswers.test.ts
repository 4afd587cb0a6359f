import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getKernel } from "../../worker/kernels";
import type { WireTask } from "../../worker/protocol/messages";
import { RawVolunteer, trpc } from "../helpers/clients";
import { computeLocally } from "../helpers/fleet";
import { createUserWithKey, startTestServer, waitFor, type TestServer } from "../helpers/server";

// Three free anonymous ids that answered every task with an error failed a consumer's pi job
// in 0.3 s, with honest volunteers online: a unit failed on 3 hosts fails its job, and a host
// is a free id. A kernel the server runs itself is now computed by the server once its errors
// reach the limit, and the job goes on.
describe("volunteers that answer every task with an error", () => {
  let srv: TestServer;
  const sockets: RawVolunteer[] = [];
  beforeAll(async () => {
    srv = await startTestServer({});
  });
  afterAll(async () => {
    for (const s of sockets) await s.close().catch(() => undefined);
    await srv?.close();
  });
  const open = async (threads: number) => {
    const v = await RawVolunteer.connect(srv.url);
    sockets.push(v);
    v.hello(threads);
    await v.next("welcome");
    return v;
  };

  it("do not fail a job of a built-in kernel: the server computes the units they errored on, and the job completes right", async () => {
    const consumer = await createUserWithKey(srv.deps, "errors@example.com");
    const liars = [await open(4), await open(4), await open(4)];
    const { id } = await trpc(srv.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: 12, params: { samples: 12 * 1000, seed: 5 }, replication: { replicas: 1, adaptive: false },
    });
    const honest = await open(2);
    const seen = [...liars, honest].map(() => new Set<string>());
    const answer = (t: WireTask) => {
      const kernel = getKernel(t.kernel)!;
      return { taskId: t.taskId, output: kernel.run(kernel.params.parse(t.params), t.input) };
    };
    let errors = 0;
    await waitFor(async () => {
      [...liars, honest].forEach((v, i) => {
        const fresh = v.tasks().filter((t) => !seen[i]!.has(t.taskId));
        for (const t of fresh) seen[i]!.add(t.taskId);
        if (!fresh.length) return;
        if (v === honest) v.send({ type: "results", results: fresh.map(answer) });
        else {
          errors += fresh.length;
          v.send({ type: "results", results: fresh.map((t) => ({ taskId: t.taskId, error: "nope" })) });
        }
      });
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
