import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, inject, it } from "vitest";
import { createPrisma, type Db } from "../../server/store/prisma";
import { IntervalCounters } from "../../server/monitoring/counters";
import { MonitoringSampler, type ClusterSource, type SamplerOptions, type SystemSource } from "../../server/monitoring/sampler";
import type { SystemReading } from "../../server/monitoring/system";
import { SERIES, type Sample } from "../../server/monitoring/series";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A fresh copy of the migrated template database, in its own temp directory. */
function freshDb(): { db: Db; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-monitoring-"));
  const file = path.join(dir, "tabgrid.db");
  fs.copyFileSync(inject("templateDb"), file);
  const db = createPrisma(`file:${file}`);
  cleanups.push(async () => {
    await db.$disconnect();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { db, dir };
}

class FakeClock {
  constructor(public t: number) {}
  now = () => this.t;
  advance(ms: number) {
    this.t += ms;
  }
}

const cluster: ClusterSource = {
  status: () => ({ volunteers: 2, threads: 6, tasksQueued: 9, tasksRunning: 4, jobsRunning: 1 }),
};

function fakeSystem(over: Partial<SystemReading> = {}): SystemSource & { reading: SystemReading } {
  const reading: SystemReading = {
    cpuPercent: 12.5, load1: 0.75, rssBytes: 100e6, heapUsedBytes: 40e6, heapTotalBytes: 60e6, eventLoopLagMs: 3,
    diskFreeBytes: 25e9, diskTotalBytes: 100e9, dbOk: true, ...over,
  };
  return { reading, read: async () => ({ ...reading }), stop() {} };
}

function newSampler(db: Db, clock: FakeClock, over: Partial<SamplerOptions> = {}) {
  const counters = new IntervalCounters();
  const sampler = new MonitoringSampler({
    db, cluster, counters, dataDir: os.tmpdir(), intervalMs: 5000, now: clock.now, system: fakeSystem(), ...over,
  });
  cleanups.push(() => sampler.stop());
  return { sampler, counters };
}

async function rows(db: Db) {
  const all = await db.metricSample.findMany({ orderBy: { at: "asc" } });
  return all.map((r) => ({ at: r.at.getTime(), values: JSON.parse(r.values) as Record<string, number> }));
}

describe("the monitoring sampler", () => {
  it("builds a sample with every series, finite, from the counters, the cluster and the system", async () => {
    const { db, dir } = freshDb();
    const clock = new FakeClock(T0);
    // The real system probe: CPU, memory, event loop, statfs of a real directory, SELECT 1.
    const { sampler, counters } = newSampler(db, clock, { system: undefined, dataDir: dir });
    await sampler.start();
    const seen: Sample[] = [];
    sampler.on("sample", (s) => seen.push(s));

    counters.dispatched(20);
    for (let i = 1; i <= 10; i++) counters.resultReceived(i * 100);
    counters.taskError();
    counters.taskError();
    counters.validated(4, 1);
    counters.validated(3, 0);
    counters.commitFailed();
    clock.advance(5000);
    await new Promise((r) => setTimeout(r, 20)); // let the event-loop histogram see a few ticks
    const s = (await sampler.tick())!;

    expect(seen).toEqual([s]);
    expect(s.at).toBe(T0 + 5000);
    expect(Object.keys(s.values).sort()).toEqual(Object.keys(SERIES).sort());
    for (const [name, v] of Object.entries(s.values)) expect(Number.isFinite(v), `${name} = ${v}`).toBe(true);
    expect(s.values).toMatchObject({
      volunteers: 2, threads: 6, queue_depth: 9, tasks_running: 4, jobs_running: 1, starved: 0,
      dispatched_per_second: 4, results_per_second: 2, validated_per_second: 0.4,
      latency_p50_ms: 500, latency_p95_ms: 1000, latency_p99_ms: 1000,
      invalid_results: 1, task_errors: 2, uptime_seconds: 5,
      // (2 errors + 1 invalid) / (10 outputs + 2 errors)
      task_failure_ratio: 3 / 12,
      // one failed commit; the real SELECT 1 answered
      db_errors: 1,
    });
    expect(s.values.rss_bytes).toBeGreaterThan(10e6);
    expect(s.values.heap_used_bytes).toBeGreaterThan(0);
    expect(s.values.heap_total_bytes).toBeGreaterThanOrEqual(s.values.heap_used_bytes);
    expect(s.values.cpu_percent).toBeGreaterThanOrEqual(0);
    expect(s.values.load1).toBeGreaterThanOrEqual(0);
    expect(s.values.event_loop_lag_ms).toBeGreaterThan(0);
    expect(s.values.disk_free_bytes).toBeGreaterThan(0);
    expect(s.values.disk_free_ratio).toBeGreaterThan(0);
    expect(s.values.disk_free_ratio).toBeLessThanOrEqual(1);

    // The next interval starts from zero.
    clock.advance(10_000);
    const next = (await sampler.tick())!;
    expect(next.values).toMatchObject({
      dispatched_per_second: 0, results_per_second: 0, validated_per_second: 0, latency_p99_ms: 0,
      invalid_results: 0, task_errors: 0, task_failure_ratio: 0, db_errors: 0, uptime_seconds: 15,
    });
    expect(sampler.latest()).toBe(next);
    expect(sampler.history()).toEqual([s, next]);
  });

  it("reports starvation, and a failed health check as a database error", async () => {
    const { db } = freshDb();
    const clock = new FakeClock(T0);
    const system = fakeSystem({ dbOk: false });
    const { sampler, counters } = newSampler(db, clock, {
      system,
      cluster: { status: () => ({ volunteers: 0, threads: 0, tasksQueued: 5, tasksRunning: 0, jobsRunning: 1 }) },
    });
    await sampler.start();
    counters.commitFailed();
    clock.advance(5000);
    const s = (await sampler.tick())!;
    expect(s.values).toMatchObject({ starved: 1, db_errors: 2, disk_free_ratio: 0.25, disk_free_bytes: 25e9 });
  });

  it("writes one averaged row per minute, and another for the open minute on stop", async () => {
    const { db } = freshDb();
    const clock = new FakeClock(T0);
    const { sampler, counters } = newSampler(db, clock);
    await sampler.start();
    // 12 samples in the first minute (at 5, 10, … 55 s and 59 s) with 0, 1, … 11 results each.
    for (let i = 0; i < 12; i++) {
      for (let k = 0; k < i; k++) counters.resultReceived(10);
      clock.t = T0 + Math.min(59_000, (i + 1) * 5000);
      await sampler.tick();
    }
    expect(await rows(db)).toEqual([]);
    clock.t = T0 + MINUTE + 1000;
    await sampler.tick();
    const written = await rows(db);
    expect(written).toHaveLength(1);
    expect(written[0].at).toBe(T0);
    expect(Object.keys(written[0].values).sort()).toEqual(Object.keys(SERIES).sort());
    expect(written[0].values.volunteers).toBe(2);
    expect(written[0].values.cpu_percent).toBe(12.5);
    // The row is the mean of the minute's samples, as the buffer holds them.
    const inMinute = sampler.history().filter((s) => s.at < T0 + MINUTE);
    expect(inMinute).toHaveLength(12);
    const mean = inMinute.reduce((sum, s) => sum + s.values.results_per_second, 0) / inMinute.length;
    expect(written[0].values.results_per_second).toBeCloseTo(mean, 10);
    expect(mean).toBeGreaterThan(0);

    clock.t = T0 + MINUTE + 6000;
    await sampler.tick();
    await sampler.stop();
    const after = await rows(db);
    expect(after.map((r) => r.at)).toEqual([T0, T0 + MINUTE]);
    expect(await sampler.tick()).toBeUndefined();
  });

  it("loads the last hour of minute rows at start, before its own samples", async () => {
    const { db } = freshDb();
    const clock = new FakeClock(T0 + 2 * HOUR + 30_000);
    const stored = [-150, -70, -59, -30, -1].map((m) => ({ at: new Date(T0 + 2 * HOUR + m * MINUTE), values: JSON.stringify({ volunteers: -m, made_up: 1 }) }));
    await db.metricSample.createMany({ data: stored });

    const { sampler } = newSampler(db, clock);
    await sampler.start();
    const loaded = sampler.history();
    expect(loaded.map((s) => s.values.volunteers)).toEqual([59, 30, 1]);
    expect(loaded.map((s) => s.at)).toEqual([-59, -30, -1].map((m) => T0 + 2 * HOUR + m * MINUTE));
    // Series a row lacks read as 0; unknown ones are dropped.
    expect(Object.keys(loaded[0].values).sort()).toEqual(Object.keys(SERIES).sort());
    expect(loaded[0].values.cpu_percent).toBe(0);

    clock.advance(5000);
    const own = (await sampler.tick())!;
    expect(sampler.history().map((s) => s.at)).toEqual([...loaded.map((s) => s.at), own.at]);
    expect(sampler.history(T0 + 2 * HOUR - 2 * MINUTE).map((s) => s.values.volunteers)).toEqual([1, 2]);

    // Older rows stay available from the database, for longer ranges.
    expect((await sampler.storedMinutes(T0 - HOUR)).map((s) => s.values.volunteers)).toEqual([150, 70, 59, 30, 1]);
    const long = await sampler.longHistory(T0 - HOUR);
    expect(long.map((s) => s.values.volunteers)).toEqual([150, 70, 59, 30, 1, 2]);
    expect(long.at(-1)).toBe(own);
    expect(await sampler.longHistory(T0 + 2 * HOUR - 2 * MINUTE)).toEqual(sampler.history(T0 + 2 * HOUR - 2 * MINUTE));
  });

  it("deletes rows older than 7 days at start, and then once an hour", async () => {
    const { db } = freshDb();
    const clock = new FakeClock(T0 + 30 * DAY);
    const at = (ms: number) => new Date(clock.t - ms);
    await db.metricSample.createMany({
      data: [8 * DAY, 7 * DAY + 1, 7 * DAY - MINUTE, DAY].map((age) => ({ at: at(age), values: "{}" })),
    });
    // Ages of the rows this test inserted (the sampler adds its own minute rows as it goes).
    const ages = async () => (await rows(db)).filter((r) => Object.keys(r.values).length === 0).map((r) => clock.t - r.at);
    const { sampler } = newSampler(db, clock);
    await sampler.start();
    expect(await ages()).toEqual([7 * DAY - MINUTE, DAY]);

    // A row that ages past 7 days survives until the next hourly prune.
    await db.metricSample.create({ data: { at: at(7 * DAY + 10), values: "{}" } });
    clock.advance(30 * MINUTE);
    await sampler.tick();
    expect(await ages()).toEqual([7 * DAY + 30 * MINUTE + 10, 7 * DAY + 29 * MINUTE, DAY + 30 * MINUTE]);
    clock.advance(30 * MINUTE);
    await sampler.tick();
    // The hour has also aged the 7-days-minus-a-minute row past the limit; the sampler's own row stays.
    expect(await ages()).toEqual([DAY + HOUR]);
    expect(await db.metricSample.count()).toBe(2);
  });

  it("samples on its own timer until stopped", async () => {
    const { db } = freshDb();
    const counters = new IntervalCounters();
    const sampler = new MonitoringSampler({ db, cluster, counters, dataDir: os.tmpdir(), intervalMs: 20, system: fakeSystem() });
    cleanups.push(() => sampler.stop());
    await sampler.start();
    const got: Sample[] = [];
    sampler.on("sample", (s) => got.push(s));
    await new Promise((r) => setTimeout(r, 300));
    expect(got.length).toBeGreaterThanOrEqual(3);
    await sampler.stop();
    const n = got.length;
    await new Promise((r) => setTimeout(r, 100));
    expect(got.length).toBe(n);
    expect(sampler.history().length).toBe(n);
  });
});
