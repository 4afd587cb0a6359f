import crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseEnv } from "../../server/env";
import { startServer, type RunningServer } from "../../server/app";
import type { WireTask } from "../../worker/protocol/messages";
import { getKernel } from "../../worker/kernels";
import { RawVolunteer, trpc } from "../helpers/clients";
import { createUserWithKey, TEST_SECRET, waitFor } from "../helpers/server";
import { freshPostgres, type TestDatabase } from "../helpers/testDb";

// A node of a cluster claims its next slice when its queue runs low, not when a slice ends
// or the claim timer fires: a slice's last tasks can be out for a long time (a slow volunteer,
// a lease that will expire), and the node's other volunteers must not sit idle meanwhile.
// The timer is set to a minute here, so only the claim ahead can feed the volunteer.
const REDIS = process.env.REDIS_TEST_URL ?? "redis://127.0.0.1:6379";
const UNITS = 1024; // four slices of 256 units

describe("a node of a cluster claims ahead of its volunteers", () => {
  let pg: TestDatabase;
  let node: RunningServer;
  let consumer: { apiKey: string };

  beforeAll(async () => {
    pg = await freshPostgres();
    node = await startServer(parseEnv({
      PORT: "0", HOST: "127.0.0.1", LOAD_SHED_DELAY_MS: "0", LOAD_SHED_MAX_REQUESTS: "0", DATABASE_URL: pg.databaseUrl, DATA_DIR: pg.dir, TABGRID_UI: "off",
      NEXTAUTH_SECRET: TEST_SECRET, NODE_ENV: "test", REDIS_URL: REDIS, REDIS_PREFIX: `tabgrid-ahead-${crypto.randomBytes(4).toString("hex")}:`,
      NODE_ID: "node-a", SLICE_CLAIM_SECONDS: "60", SLICE_LEASE_SECONDS: "60", LEASE_SECONDS: "120",
      SPOT_CHECKS: "off", TABGRID_ALERTS: "off", MAX_CHUNKS: String(UNITS),
    }), { ui: false, log: () => {} });
    consumer = await createUserWithKey(node.deps, "consumer@example.com");
  }, 120_000);
  afterAll(async () => {
    await node?.close();
    await pg?.remove();
  });

  it("keeps a volunteer fed while the first slice's first task stays out", async () => {
    const v = await RawVolunteer.connect(node.url);
    v.hello(16); // a window of 32 tasks: the node aims for 4 windows queued (128), so it claims one slice at a time
    await v.next("welcome");
    const { id } = await trpc(node.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: UNITS, params: { samples: UNITS * 1000, seed: 1 }, replication: { replicas: 1, adaptive: false },
    });
    const output = (t: WireTask) => {
      const kernel = getKernel(t.kernel)!;
      return { taskId: t.taskId, output: kernel.run(kernel.params.parse(t.params), t.input) };
    };
    // Answer everything but the 11th task (a newcomer is trusted with more after its first
    // results), which this volunteer keeps: the first slice cannot end, so its end cannot
    // trigger the next claim.
    let held: WireTask | undefined;
    const answered = new Set<string>();
    let done = 0;
    await waitFor(async () => {
      const fresh = v.tasks().filter((t) => !answered.has(t.taskId) && t.taskId !== held?.taskId);
      if (!held && answered.size + fresh.length > 10) held = fresh.splice(10 - answered.size, 1)[0];
      for (const t of fresh) answered.add(t.taskId);
      if (fresh.length) v.send({ type: "results", results: fresh.map(output) });
      done = (await node.deps.db.job.findUnique({ where: { id } }))?.unitsDone ?? 0;
      return done === UNITS - 1;
    }, 30_000, "every task but the one held back", 10).catch((e: Error) => {
      throw new Error(`${e.message}: ${done} units done, slices held ${node.deps.coordinator.slices().map((x) => x.id).join(" ")}, refused ${JSON.stringify(v.messages.flatMap((m) => (m.type === "ack" ? m.rejected : [])).slice(0, 2))}`);
    });
    expect(node.deps.coordinator.slices().map((s) => s.id)).toContain(`${id}:0:0`);

    // The held task comes in last: the first slice ends, and the job completes.
    v.send({ type: "results", results: [output(held!)] });
    await waitFor(async () => (await node.deps.db.job.findUnique({ where: { id } }))?.state === "completed", 20_000, "the job to complete");
    await waitFor(() => node.deps.coordinator.slices().length === 0, 10_000, "the node to give its finished slices up");
    await v.close();
  });

  it("claims its own slice back after its lease ran out (a stall), rebuilds it, and never marks it done with units left", async () => {
    const v = await RawVolunteer.connect(node.url);
    v.hello(16);
    await v.next("welcome");
    const { id } = await trpc(node.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: 512, params: { samples: 512 * 1000, seed: 3 }, replication: { replicas: 1, adaptive: false },
    });
    const db = node.deps.db;
    const output = (t: WireTask) => {
      const kernel = getKernel(t.kernel)!;
      return { taskId: t.taskId, output: kernel.run(kernel.params.parse(t.params), t.input) };
    };
    const doneTooSoon = async () => {
      const done = await db.slice.findMany({ where: { jobId: id, done: true } });
      for (const s of done) {
        const left = await db.workUnit.count({ where: { jobId: id, done: false, idx: { gte: s.first, lt: s.last } } });
        if (left) return `${s.id} marked done with ${left} units left`;
      }
      return undefined;
    };
    const answered = new Set<string>();
    const answer = () => {
      const fresh = v.tasks().filter((t) => !answered.has(t.taskId));
      for (const t of fresh) answered.add(t.taskId);
      if (fresh.length) v.send({ type: "results", results: fresh.map(output) });
    };
    await waitFor(async () => {
      answer();
      return (await db.job.findUnique({ where: { id } }))!.unitsDone >= 32;
    }, 20_000, "the first results", 10);
    // The node "stalls": its lease runs out unrenewed. The volunteer then offers more threads,
    // and the claim that follows finds this node's own slice first (the oldest claimable).
    // (Again until it does: a renewal due at that moment would extend the lease first.)
    let threads = 64;
    await waitFor(async () => {
      if ((await db.slice.findUnique({ where: { id: `${id}:0:0` } }))?.epoch === 2) return true;
      await db.$executeRawUnsafe(`UPDATE "Slice" SET "leaseUntil" = (now() AT TIME ZONE 'UTC') - interval '1 second' WHERE "id" = $1 AND "epoch" = 1`, `${id}:0:0`);
      v.send({ type: "capacity", threads: threads++ });
      return false;
    }, 10_000, "the node to claim its slice back", 200);
    expect(await doneTooSoon()).toBeUndefined();
    await waitFor(async () => {
      answer();
      const wrong = await doneTooSoon();
      if (wrong) throw new Error(wrong);
      return (await db.job.findUnique({ where: { id } }))?.state === "completed";
    }, 30_000, "the job to complete", 10);
    const first = await db.slice.findUniqueOrThrow({ where: { id: `${id}:0:0` } });
    expect(first, "the first slice claimed twice, by this node").toMatchObject({ owner: "node-a", epoch: 2, done: true });
    expect(await db.workUnit.count({ where: { jobId: id, done: false } })).toBe(0);
    await v.close();
  });

  it("claims when a connected volunteer starts offering threads", async () => {
    const v = await RawVolunteer.connect(node.url);
    v.hello(0); // connected, computing nothing yet: the node has no reason to claim
    await v.next("welcome");
    const { id } = await trpc(node.url, consumer.apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: 10, params: { samples: 10_000, seed: 2 }, replication: { replicas: 1, adaptive: false },
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(node.deps.coordinator.slices().map((s) => s.id)).not.toContain(`${id}:0:0`);
    v.send({ type: "capacity", threads: 2 });
    // A slice's tasks carry its scheduler job's id, the job's id and the slice's first unit.
    await waitFor(() => v.tasks().some((t) => t.jobId === `${id}@0`), 10_000, "tasks once the volunteer offers threads");
    expect(node.deps.coordinator.slices().map((s) => s.id)).toContain(`${id}:0:0`);
    await v.close();
  });
});
