import crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseEnv } from "../../server/env";
import { startServer, type RunningServer } from "../../server/app";
import type { WireTask } from "../../worker/protocol/messages";
import { getKernel } from "../../worker/kernels";
import { RawVolunteer, trpc } from "../helpers/clients";
import { createUserWithKey, TEST_SECRET, waitFor } from "../helpers/server";
import { freshPostgres, type TestDatabase } from "../helpers/testDb";

// Cluster mode: a job of four slices whose results all land at once. Every slice that ends
// then sees each unit of the job done; the job must still be merged and finished once. And a
// job that two calls cancel at once is ended, refunded, counted and logged once.
const REDIS = process.env.REDIS_TEST_URL ?? "redis://127.0.0.1:6379";
const UNITS = 1024; // one node: four slices of 256

describe("a cluster job ended from several places at once", () => {
  let pg: TestDatabase;
  let node: RunningServer;
  let consumer: { apiKey: string };
  const logs: string[] = [];

  beforeAll(async () => {
    pg = await freshPostgres();
    node = await startServer(parseEnv({
      PORT: "0", HOST: "127.0.0.1", LOAD_SHED_DELAY_MS: "0", LOAD_SHED_MAX_REQUESTS: "0", DATABASE_URL: pg.databaseUrl, DATA_DIR: pg.dir, TABGRID_UI: "off",
      NEXTAUTH_SECRET: TEST_SECRET, NODE_ENV: "test", REDIS_URL: REDIS, REDIS_PREFIX: `tabgrid-finish-${crypto.randomBytes(4).toString("hex")}:`,
      NODE_ID: "node-a", SPOT_CHECKS: "off", TABGRID_ALERTS: "off",
    }), { ui: false, log: (line: string) => logs.push(line) });
    consumer = await createUserWithKey(node.deps, "consumer@example.com");
  }, 120_000);
  afterAll(async () => {
    await node?.close();
    await pg?.remove();
  });

  it("is finished once, not once per slice", async () => {
    // Two volunteers of 256 threads: their windows grow from 32 tasks as they answer, to 512 each.
    const volunteers = await Promise.all([RawVolunteer.connect(node.url), RawVolunteer.connect(node.url)]);
    for (const v of volunteers) {
      v.hello(256);
      await v.next("welcome");
    }
    const { id } = await trpc(node.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: UNITS, params: { samples: UNITS * 1000, seed: 5 }, replication: { replicas: 1, adaptive: false },
    });
    expect(await node.deps.db.slice.count({ where: { jobId: id } })).toBe(4);
    const ofJob = (v: RawVolunteer) => v.tasks().filter((t) => t.jobId.startsWith(`${id}@`));
    const output = (t: WireTask) => {
      const kernel = getKernel(t.kernel)!;
      return { taskId: t.taskId, output: kernel.run(kernel.params.parse(t.params), t.input) };
    };
    // Answered a frame at a time: slices end in the batches their last results commit in.
    const answered = new Set<string>();
    await waitFor(async () => {
      for (const v of volunteers) {
        const fresh = ofJob(v).filter((t) => !answered.has(t.taskId));
        for (const t of fresh) answered.add(t.taskId);
        if (fresh.length) v.send({ type: "results", results: fresh.map(output) });
      }
      return (await node.deps.db.job.findUnique({ where: { id } }))?.state === "completed";
    }, 30_000, "the job to complete", 10);
    // Let any second ending of the job run its course before counting.
    await node.deps.coordinator.drain();
    await new Promise((r) => setTimeout(r, 500));

    const metrics = await (await fetch(`${node.url}/api/metrics`)).text();
    const completed = metrics.match(/^tabgrid_jobs_finished_total\{[^}]*state="completed"[^}]*\} (\d+)$/m);
    expect(completed?.[1]).toBe("1");
    expect(logs.filter((l) => l.includes(`job ${id} completed`))).toHaveLength(1);
    const job = await node.deps.db.job.findUniqueOrThrow({ where: { id } });
    expect(job.unitsDone).toBe(UNITS);
    expect(job.result).not.toBeNull();
    await Promise.all(volunteers.map((v) => v.close()));
  });

  it("counts and logs a job ended twice at once (two cancels) once", async () => {
    const { id } = await trpc(node.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: 8, params: { samples: 8000, seed: 6 }, replication: { replicas: 1, adaptive: false },
    });
    const finished = async () => {
      const m = (await (await fetch(`${node.url}/api/metrics`)).text()).match(/^tabgrid_jobs_finished_total\{[^}]*state="cancelled"[^}]*\} (\d+)$/m);
      return Number(m?.[1] ?? 0);
    };
    const before = await finished();
    // Both pass the API's "still running" check before either commits; in a cluster they may be on two nodes.
    expect(await Promise.all([node.deps.coordinator.cancelJob(id), node.deps.coordinator.cancelJob(id)])).toEqual([true, true]);
    expect((await node.deps.db.job.findUniqueOrThrow({ where: { id } })).state).toBe("cancelled");
    expect(await finished()).toBe(before + 1);
    expect(logs.filter((l) => l.endsWith(`job ${id} cancelled`))).toHaveLength(1);
    // The escrow went back once: the owner paid nothing for a job that computed nothing.
    const refunds = await node.deps.db.ledgerEntry.count({ where: { jobId: id, kind: "refund", amount: { gt: 0 } } });
    expect(refunds).toBe(1);
  });
});
