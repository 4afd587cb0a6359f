import crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseEnv } from "../../server/env";
import { startServer, type RunningServer } from "../../server/app";
import type { WireTask } from "../../worker/protocol/messages";
import { getKernel } from "../../worker/kernels";
import { RawVolunteer, trpc } from "../helpers/clients";
import { createUserWithKey, TEST_SECRET, waitFor } from "../helpers/server";
import { freshPostgres, type TestDatabase } from "../helpers/testDb";

// A small job in a cluster of two nodes, each with one volunteer: it is cut into slices small
// enough for both nodes to claim some, so both volunteers compute it. With one slice of 256
// units it would be computed by the volunteer of whichever node claimed it first.
const REDIS = process.env.REDIS_TEST_URL ?? "redis://127.0.0.1:6379";
const UNITS = 64; // two nodes: four slices of 16

describe("a small job spreads over the nodes of a cluster", () => {
  let pg: TestDatabase;
  let a: RunningServer;
  let b: RunningServer;
  let consumer: { apiKey: string };

  beforeAll(async () => {
    pg = await freshPostgres();
    const prefix = `tabgrid-spread-${crypto.randomBytes(4).toString("hex")}:`;
    const start = (id: string) => startServer(parseEnv({
      PORT: "0", HOST: "127.0.0.1", LOAD_SHED_DELAY_MS: "0", LOAD_SHED_MAX_REQUESTS: "0", DATABASE_URL: pg.databaseUrl, DATA_DIR: pg.dir, TABGRID_UI: "off",
      NEXTAUTH_SECRET: TEST_SECRET, NODE_ENV: "test", REDIS_URL: REDIS, REDIS_PREFIX: prefix, NODE_ID: id,
      SPOT_CHECKS: "off", TABGRID_ALERTS: "off",
    }), { ui: false, log: () => {} });
    [a, b] = await Promise.all([start("node-a"), start("node-b")]);
    consumer = await createUserWithKey(a.deps, "consumer@example.com");
  }, 120_000);
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await pg?.remove();
  });

  it("cuts it into slices for both nodes, whose volunteers both compute it to the end", async () => {
    const [va, vb] = await Promise.all([RawVolunteer.connect(a.url), RawVolunteer.connect(b.url)]);
    for (const v of [va, vb]) {
      v.hello(2);
      await v.next("welcome");
    }
    await waitFor(async () => (await a.deps.db.node.count()) === 2, 10_000, "both nodes' heartbeats");
    const { id } = await trpc(a.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: UNITS, params: { samples: UNITS * 1000, seed: 3 }, replication: { replicas: 1, adaptive: false },
    });
    const slices = await a.deps.db.slice.findMany({ where: { jobId: id }, orderBy: { first: "asc" } });
    expect(slices.map((s) => [s.first, s.last])).toEqual([[0, 16], [16, 32], [32, 48], [48, 64]]);

    const output = (t: WireTask) => {
      const kernel = getKernel(t.kernel)!;
      return { taskId: t.taskId, output: kernel.run(kernel.params.parse(t.params), t.input) };
    };
    const answered = new Set<string>();
    const computedBy = { a: 0, b: 0 };
    await waitFor(async () => {
      for (const [name, v] of [["a", va], ["b", vb]] as const) {
        const fresh = v.tasks().filter((t) => !answered.has(t.taskId) && t.jobId.startsWith(`${id}@`));
        for (const t of fresh) answered.add(t.taskId);
        computedBy[name] += fresh.length;
        if (fresh.length) v.send({ type: "results", results: fresh.map(output) });
      }
      return (await a.deps.db.job.findUnique({ where: { id } }))?.state === "completed";
    }, 30_000, "the job to complete", 10);
    expect(computedBy.a).toBeGreaterThan(0);
    expect(computedBy.b).toBeGreaterThan(0);
    expect(computedBy.a + computedBy.b).toBe(UNITS);
    const job = await a.deps.db.job.findUniqueOrThrow({ where: { id } });
    expect(job.unitsDone).toBe(UNITS);
    await Promise.all([va.close(), vb.close()]);
  });
});
