import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUserWithKey, startTestServer, waitFor, type TestServer } from "../helpers/server";
import { RawVolunteer, trpc, trpcError } from "../helpers/clients";
import { runTask } from "../../worker/runtime/runTask";
import { MILLI } from "../../server/services/credits/accounts";

let srv: TestServer;
let admin: Awaited<ReturnType<typeof createUserWithKey>>;
let consumer: Awaited<ReturnType<typeof createUserWithKey>>;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
  // Hand-driven volunteers count their tasks exactly: no ringers or probation (see attack.*.test.ts).
  srv = await startTestServer({ PRICE_PER_CPU_SECOND: "1", SPOT_CHECKS: "off" });
  admin = await createUserWithKey(srv.deps, "root@example.com"); // the first account is admin
  consumer = await createUserWithKey(srv.deps, "consumer@example.com");
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await srv?.close();
});

// 4 units of 900,000 samples: 5 reference CPU-ms each (an exact number, so doubling is exact).
const job = { kernel: "pi", chunks: 4, params: { samples: 3_600_000, seed: 7 }, replication: { replicas: 1 } };

async function holdOf(jobId: string) {
  const e = await srv.deps.db.ledgerEntry.findFirstOrThrow({ where: { jobId, kind: "hold", amount: { gt: 0 } } });
  return e.amount;
}

describe("the price of a reference CPU-second", () => {
  it("is an admin setting that the estimate and the escrow hold follow", async () => {
    const asAdmin = trpc(srv.url, admin.apiKey);
    const asConsumer = trpc(srv.url, consumer.apiKey);
    expect(await asAdmin.pricing.get.query()).toMatchObject({ pricePerCpuSecond: 1, defaultPrice: 1, updatedAt: null });

    const before = await asConsumer.jobs.estimate.query(job);
    expect(before).toMatchObject({ price: 1 * MILLI, estimate: 4 * 5, cpuSeconds: 0.02 });
    const a = await asConsumer.jobs.submit.mutate(job);
    expect(await holdOf(a.id)).toBe(before.estimate);
    await asConsumer.jobs.cancel.mutate({ id: a.id });

    // Ordinary users and anonymous callers cannot read or change the price.
    expect((await trpcError(asConsumer.pricing.set.mutate({ pricePerCpuSecond: 100 }))).code).toBe("FORBIDDEN");
    expect((await trpcError(asConsumer.pricing.get.query())).code).toBe("FORBIDDEN");
    expect((await trpcError(trpc(srv.url).pricing.set.mutate({ pricePerCpuSecond: 100 }))).code).toBe("UNAUTHORIZED");
    expect((await trpcError(asAdmin.pricing.set.mutate({ pricePerCpuSecond: -1 }))).code).toBe("BAD_REQUEST");

    const set = await asAdmin.pricing.set.mutate({ pricePerCpuSecond: 2 });
    expect(set.pricePerCpuSecond).toBe(2);
    const row = await srv.deps.db.setting.findUniqueOrThrow({ where: { key: "pricePerCpuSecond" } });
    expect(JSON.parse(row.value)).toBe(2);

    const after = await asConsumer.jobs.estimate.query(job);
    expect(after.price).toBe(2 * before.price);
    expect(after.estimate).toBe(2 * before.estimate);
    const b = await asConsumer.jobs.submit.mutate(job);
    expect(b.estimate).toBe(2 * before.estimate);
    expect(await holdOf(b.id)).toBe(2 * before.estimate);
    const units = await srv.deps.db.workUnit.findMany({ where: { jobId: b.id } });
    expect(units.map((u) => u.pay)).toEqual([10, 10, 10, 10]);
    await asConsumer.jobs.cancel.mutate({ id: b.id });
  });
});

describe("measured work", () => {
  it("stores the host's clamped benchmark, each result's CPU-ms and its reference CPU-ms, and the job reports both", async () => {
    const { db } = srv.deps;
    // An absurd self-reported score is clamped to the bound.
    const boaster = await RawVolunteer.connect(srv.url);
    cleanups.push(() => boaster.close());
    boaster.hello(0, { benchmark: 500 });
    await boaster.next("welcome");
    expect((await db.volunteer.findUniqueOrThrow({ where: { id: boaster.identity.volunteerId } })).benchmarkScore).toBe(50);
    await boaster.close();

    const v = await RawVolunteer.connect(srv.url);
    cleanups.push(() => v.close());
    v.hello(4, { benchmark: 2.5 });
    await v.next("welcome");
    expect((await db.volunteer.findUniqueOrThrow({ where: { id: v.identity.volunteerId } })).benchmarkScore).toBe(2.5);

    const asConsumer = trpc(srv.url, consumer.apiKey);
    const { id } = await asConsumer.jobs.submit.mutate({ ...job, chunks: 3, params: { samples: 2_700_000, seed: 9 } });
    const tasks = await waitFor(() => (v.tasks().length >= 3 ? v.tasks() : undefined), 10_000, "3 tasks");
    const reported = [40, 10, 100];
    v.send({
      type: "results",
      results: tasks.map((t, i) => ({ taskId: t.taskId, output: runTask(t).output, ms: reported[i] })),
    });
    await waitFor(async () => (await db.job.findUnique({ where: { id } }))?.state === "completed", 10_000, "the job to complete");
    await srv.deps.coordinator.drain();

    const results = await db.result.findMany({ where: { jobId: id }, include: { unit: true } });
    expect(results).toHaveLength(3);
    for (const [i, t] of tasks.entries()) {
      const r = results.find((x) => x.id === t.taskId)!;
      expect(r.state).toBe("valid");
      expect(r.cpuMs).toBe(reported[i]);
      expect(r.workMs).toBeCloseTo(reported[i] * 2.5, 9);
      // Paid on the unit's estimate, whatever the host claimed.
      expect(r.paid).toBe(r.unit.pay);
    }

    const view = await asConsumer.jobs.get.query({ id });
    const measured = results.reduce((s, r) => s + r.workMs!, 0);
    const estimated = results.reduce((s, r) => s + r.unit.work, 0);
    expect(measured).toBeCloseTo(150 * 2.5, 9);
    expect(view.work).toMatchObject({ validResults: 3, measuredResults: 3, estimatedMs: estimated, estimatedMeasuredMs: estimated });
    expect(view.work.measuredMs).toBeCloseTo(measured, 9);
    expect(view.cost).toBe(results.reduce((s, r) => s + r.paid, 0));
    expect(view.work.effectivePrice).toBeCloseTo(view.cost / (measured / 1000), 9);
    expect(view.estimate).toBe(view.cost); // one replica, every unit paid once: the hold was spent exactly
  });
});
