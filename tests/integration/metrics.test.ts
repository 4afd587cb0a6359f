import fs from "node:fs";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseEnv } from "../../server/env";
import { startServer, type RunningServer } from "../../server/app";
import { completeValues } from "../../server/monitoring/history";
import { createPrisma } from "../../server/store/prisma";
import { SERIES, type Sample } from "../../server/monitoring/series";
import { getKernel } from "../../worker/kernels";
import { RawVolunteer, trpc } from "../helpers/clients";
import { createUserWithKey, startTestServer, TEST_SECRET, waitFor, type TestServer } from "../helpers/server";
import { freshDatabase, type TestDatabase } from "../helpers/testDb";

// The package ships no types: its output, as far as these tests read it.
interface Family {
  name: string;
  help: string;
  type: string;
  metrics: Array<{ value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string; sum?: string }>;
}
const parsePrometheus = createRequire(import.meta.url)("parse-prometheus-text-format") as (text: string) => Family[];

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** Label names Tabgrid's own families may use: each takes a handful of fixed values. */
const ALLOWED_LABELS = new Set(["outcome", "state", "version", "le", "reason"]);
const TABGRID_FAMILIES = {
  tabgrid_build_info: "GAUGE",
  tabgrid_volunteers: "GAUGE",
  tabgrid_worker_threads: "GAUGE",
  tabgrid_jobs_running: "GAUGE",
  tabgrid_tasks_queued: "GAUGE",
  tabgrid_tasks_running: "GAUGE",
  tabgrid_data_disk_free_bytes: "GAUGE",
  tabgrid_event_loop_lag_seconds: "GAUGE",
  tabgrid_tasks_dispatched_total: "COUNTER",
  tabgrid_results_total: "COUNTER",
  tabgrid_units_validated_total: "COUNTER",
  tabgrid_jobs_finished_total: "COUNTER",
  tabgrid_commit_failures_total: "COUNTER",
  tabgrid_volunteer_messages_rejected_total: "COUNTER",
  tabgrid_task_turnaround_seconds: "HISTOGRAM",
  tabgrid_commit_duration_seconds: "HISTOGRAM",
} as const;

// As Prometheus reads a value (Go's ParseFloat): a number, or NaN / ±Inf in any case. prom-client
// writes "Nan" for a default metric measured over no data yet (the event-loop mean right at start).
const isNumber = (v: string | undefined) => v !== undefined && (/^[+-]?(inf|infinity|nan)$/i.test(v) || Number.isFinite(Number(v)));

async function scrape(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/api/metrics`, { headers });
  return { status: res.status, type: res.headers.get("content-type"), auth: res.headers.get("www-authenticate"), text: await res.text() };
}

/**
 * Parses the exposition and checks it the way Prometheus would read it, plus Tabgrid's own
 * conventions; returns the families by name.
 */
function checkExposition(text: string): Map<string, Family> {
  const families = parsePrometheus(text);
  const byName = new Map<string, Family>();
  for (const f of families) {
    expect(f.name, `family name ${f.name}`).toMatch(METRIC_NAME);
    expect(byName.has(f.name), `${f.name} declared twice`).toBe(false);
    byName.set(f.name, f);
    expect(["COUNTER", "GAUGE", "HISTOGRAM", "SUMMARY", "UNTYPED"], `type of ${f.name}`).toContain(f.type);
    if (f.type === "COUNTER") expect(f.name, "a counter's name ends in _total").toMatch(/_total$/);
    for (const m of f.metrics) {
      for (const label of Object.keys(m.labels ?? {})) {
        expect(label, `label of ${f.name}`).toMatch(LABEL_NAME);
        expect(label.startsWith("__"), `reserved label ${label} on ${f.name}`).toBe(false);
      }
      if (f.type === "HISTOGRAM") {
        const buckets = Object.entries(m.buckets ?? {}).map(([le, n]) => [le === "+Inf" ? Infinity : Number(le), Number(n)] as const);
        buckets.sort((a, b) => a[0] - b[0]);
        expect(buckets.at(-1)?.[0], `${f.name} has a +Inf bucket`).toBe(Infinity);
        for (let i = 1; i < buckets.length; i++) expect(buckets[i][1]).toBeGreaterThanOrEqual(buckets[i - 1][1]);
        // The parser folds a histogram with labels besides `le` (nodejs_gc_duration_seconds{kind})
        // into one bucket map and drops its count and sum; Tabgrid's have no other labels.
        if (m.count !== undefined || f.name.startsWith("tabgrid_")) {
          expect(buckets.at(-1)![1], `${f.name} +Inf bucket = count`).toBe(Number(m.count));
          expect(isNumber(m.sum), `${f.name} sum`).toBe(true);
        }
      } else {
        expect(isNumber(m.value), `${f.name} value ${m.value}`).toBe(true);
      }
    }
    if (f.name.startsWith("tabgrid_")) {
      expect(f.help.length, `${f.name} has help`).toBeGreaterThan(5);
      if (f.type !== "COUNTER") expect(f.name, "only counters end in _total").not.toMatch(/_total$/);
      expect(f.name, "base units").not.toMatch(/_(ms|milliseconds|minutes|hours|kb|mb|gb|percent)(_|$)/);
      for (const m of f.metrics) for (const label of Object.keys(m.labels ?? {})) expect(ALLOWED_LABELS, `${f.name}{${label}}`).toContain(label);
    }
  }
  // Every sample line belongs to a declared family: nothing was skipped by a lenient parser.
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const name = /^[^{\s]+/.exec(line)![0];
    const family = byName.get(name) ?? byName.get(name.replace(/_(bucket|sum|count)$/, ""));
    expect(family, `line "${line}" belongs to a family`).toBeDefined();
  }
  for (const [name, type] of Object.entries(TABGRID_FAMILIES)) expect(byName.get(name)?.type, name).toBe(type);
  return byName;
}

/** The value of the one series of a family whose labels match. */
function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}) {
  const f = families.get(name);
  const m = f?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  if (!m) throw new Error(`no ${name}${JSON.stringify(labels)}`);
  return Number(m.value ?? m.count);
}

/** Answers every task it is given: the first one with a kernel error, the rest by computing it. */
function answerTasks(volunteers: RawVolunteer[], state: { errorSent: boolean }) {
  const answered = new Set<string>();
  const timer = setInterval(() => {
    for (const v of volunteers) {
      const results: unknown[] = [];
      for (const t of v.tasks()) {
        if (answered.has(t.taskId)) continue;
        answered.add(t.taskId);
        if (!state.errorSent) {
          state.errorSent = true;
          results.push({ taskId: t.taskId, error: "RangeError: injected by the test" });
        } else {
          results.push({ taskId: t.taskId, output: getKernel(t.kernel)!.run(t.params, t.input) });
        }
      }
      if (results.length) v.send({ type: "results", results });
    }
  }, 5);
  return () => clearInterval(timer);
}

describe("/api/metrics and the dashboard samples of a running server", () => {
  let srv: TestServer;
  const volunteers: RawVolunteer[] = [];
  const samples: Sample[] = [];
  /** Samples stamped at or after this were all emitted after the listener was attached. */
  let listeningSince = 0;

  beforeAll(async () => {
    // Hand-driven volunteers count their tasks exactly: no ringers or probation (see attack.*.test.ts).
    srv = await startTestServer({ METRICS_INTERVAL_SECONDS: "0.1", SPOT_CHECKS: "off" });
    srv.deps.monitoring.sampler.on("sample", (s) => samples.push(s));
    listeningSince = Date.now();
  });

  afterAll(async () => {
    await Promise.all(volunteers.map((v) => v.close().catch(() => undefined)));
    await srv?.close();
  });

  it("serves a valid Prometheus exposition, open by default, with Node's default metrics", async () => {
    const res = await scrape(srv.url);
    expect(res.status).toBe(200);
    expect(res.type).toBe(srv.deps.monitoring.registry.contentType);
    expect(res.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = checkExposition(res.text);
    for (const name of ["process_cpu_user_seconds_total", "process_resident_memory_bytes", "nodejs_heap_size_used_bytes", "nodejs_eventloop_lag_p99_seconds", "nodejs_version_info"]) {
      expect(families.has(name), name).toBe(true);
    }
    expect(value(families, "process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(value(families, "tabgrid_data_disk_free_bytes")).toBeGreaterThan(0);
    expect(value(families, "tabgrid_build_info", { version: JSON.parse(fs.readFileSync("package.json", "utf8")).version })).toBe(1);
    expect(value(families, "tabgrid_tasks_dispatched_total")).toBe(0);
    expect(value(families, "tabgrid_results_total", { outcome: "received" })).toBe(0);

    // Health carries the version too.
    const health = await fetch(`${srv.url}/api/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: "ok", database: "ok", version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
  });

  it("moves the counters and the samples as a job runs", async () => {
    const { db, coordinator, monitoring } = srv.deps;
    const { apiKey } = await createUserWithKey(srv.deps, "metrics@example.com");
    for (let i = 0; i < 2; i++) {
      const v = await RawVolunteer.connect(srv.url);
      volunteers.push(v);
      v.hello(1);
      await v.next("welcome");
    }
    // A frame the server must refuse.
    const from = volunteers[0].messages.length;
    volunteers[0].send("this is not JSON");
    await volunteers[0].next("error", from);

    let families = checkExposition((await scrape(srv.url)).text);
    expect(value(families, "tabgrid_volunteers")).toBe(2);
    expect(value(families, "tabgrid_worker_threads")).toBe(2);
    expect(value(families, "tabgrid_volunteer_messages_rejected_total")).toBe(1);

    const state = { errorSent: false };
    const stop = answerTasks(volunteers, state);
    const CHUNKS = 4;
    const started = Date.now();
    const { id } = await trpc(srv.url, apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: CHUNKS, params: { samples: CHUNKS * 10_000 }, replication: { replicas: 1 },
    });
    await waitFor(async () => (await db.job.findUnique({ where: { id }, select: { state: true } }))?.state === "completed", 20_000, "the job to complete");
    stop();
    await coordinator.drain();
    expect(state.errorSent).toBe(true);

    families = await waitFor(async () => {
      const f = checkExposition((await scrape(srv.url)).text);
      return value(f, "tabgrid_jobs_finished_total", { state: "completed" }) === 1 ? f : undefined;
    }, 5000, "the finished job to be counted");
    const received = value(families, "tabgrid_results_total", { outcome: "received" });
    const errors = value(families, "tabgrid_results_total", { outcome: "error" });
    expect(received).toBe(CHUNKS);
    expect(errors).toBe(1);
    expect(value(families, "tabgrid_results_total", { outcome: "valid" })).toBe(CHUNKS);
    expect(value(families, "tabgrid_results_total", { outcome: "invalid" })).toBe(0);
    expect(value(families, "tabgrid_units_validated_total")).toBe(CHUNKS);
    // Every task sent was answered once: with an output or with the error (which sent its unit again).
    expect(value(families, "tabgrid_tasks_dispatched_total")).toBe(received + errors);
    expect(value(families, "tabgrid_task_turnaround_seconds")).toBe(CHUNKS); // the histogram's count
    expect(value(families, "tabgrid_commit_duration_seconds")).toBeGreaterThan(0);
    expect(value(families, "tabgrid_commit_failures_total")).toBe(0);
    expect(value(families, "tabgrid_jobs_finished_total", { state: "failed" })).toBe(0);
    expect(value(families, "tabgrid_jobs_running")).toBe(0);
    expect(value(families, "tabgrid_tasks_queued")).toBe(0);
    expect(value(families, "tabgrid_tasks_running")).toBe(0);
    // No family names a job, a user or a volunteer.
    expect(families.get("tabgrid_results_total")!.metrics).toHaveLength(4);
    expect((await scrape(srv.url)).text).not.toContain(id);

    // The dashboard samples saw the same work: counts per interval add up exactly.
    const done = Date.now();
    await waitFor(() => (monitoring.sampler.latest()?.at ?? 0) > done, 5000, "a sample after the job");
    const during = monitoring.sampler.history(started - 1000);
    expect(during.length).toBeGreaterThanOrEqual(2);
    expect(during.reduce((n, s) => n + s.values.task_errors, 0)).toBe(1);
    expect(during.reduce((n, s) => n + s.values.invalid_results, 0)).toBe(0);
    expect(during.some((s) => s.values.dispatched_per_second > 0)).toBe(true);
    expect(during.some((s) => s.values.results_per_second > 0)).toBe(true);
    expect(during.some((s) => s.values.validated_per_second > 0)).toBe(true);
    expect(during.some((s) => s.values.task_failure_ratio > 0)).toBe(true);
    const last = monitoring.sampler.latest()!;
    expect(last.values).toMatchObject({ volunteers: 2, threads: 2, jobs_running: 0, queue_depth: 0, db_errors: 0 });
    for (const name of Object.keys(SERIES)) expect(Number.isFinite(last.values[name as keyof typeof SERIES]), name).toBe(true);
    // The "sample" event delivered what history holds.
    expect(samples.length).toBeGreaterThanOrEqual(monitoring.sampler.history(listeningSince).length);
    expect(monitoring.sampler.history().slice(-samples.length)).toEqual(samples.slice(-monitoring.sampler.history().length));
  });
});

describe("METRICS_TOKEN", () => {
  let srv: TestServer;
  const TOKEN = "scrape-me-please-0123456789";

  beforeAll(async () => {
    srv = await startTestServer({ METRICS_TOKEN: TOKEN });
  });
  afterAll(() => srv?.close());

  it("is required as a bearer token when set", async () => {
    const none = await scrape(srv.url);
    expect(none.status).toBe(401);
    expect(none.auth).toMatch(/^Bearer/);
    expect(none.text).not.toContain("tabgrid_");
    expect((await scrape(srv.url, { authorization: "Bearer wrong-token" })).status).toBe(401);
    expect((await scrape(srv.url, { authorization: TOKEN })).status).toBe(401);
    expect((await scrape(srv.url, { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString("base64")}` })).status).toBe(401);

    const ok = await scrape(srv.url, { authorization: `Bearer ${TOKEN}` });
    expect(ok.status).toBe(200);
    checkExposition(ok.text);
    // Health stays open for liveness probes.
    expect((await fetch(`${srv.url}/api/health`)).status).toBe(200);
  });
});

describe("metric history across a restart", () => {
  let fresh: TestDatabase;
  const MINUTE_MS = 250; // a shortened "minute", injected into the server's sampler
  const running: RunningServer[] = [];

  beforeAll(async () => {
    fresh = await freshDatabase("tabgrid-metrics-");
  });
  afterAll(async () => {
    await Promise.all(running.map((s) => s.close().catch(() => undefined)));
    await fresh?.remove();
  });

  async function start() {
    const env = parseEnv({
      PORT: "0", HOST: "127.0.0.1", LOAD_SHED_DELAY_MS: "0", LOAD_SHED_MAX_REQUESTS: "0", DATABASE_URL: fresh.databaseUrl, DATA_DIR: fresh.dir, COMMIT_INTERVAL_MS: "2",
      TABGRID_UI: "off", NEXTAUTH_SECRET: TEST_SECRET, NODE_ENV: "test", METRICS_INTERVAL_SECONDS: "0.05",
    });
    const server = await startServer(env, { ui: false, log: () => {}, monitoring: { minuteMs: MINUTE_MS } });
    running.push(server);
    return server;
  }

  it("writes a MetricSample row per minute and loads them after a restart", async () => {
    const first = await start();
    const { db } = first.deps;
    const rows = await waitFor(async () => {
      const r = await db.metricSample.findMany({ orderBy: { at: "asc" } });
      return r.length >= 3 ? r : undefined;
    }, 10_000, "three minute rows");
    for (const r of rows) {
      expect(r.at.getTime() % MINUTE_MS).toBe(0);
      const values = JSON.parse(r.values) as Record<string, number>;
      expect(Object.keys(values).sort()).toEqual(Object.keys(SERIES).sort());
      for (const v of Object.values(values)) expect(Number.isFinite(v)).toBe(true);
    }
    // A minute's row is the mean of that minute's samples.
    const minute = rows[1].at.getTime();
    const inMinute = first.deps.monitoring.sampler.history().filter((s) => s.at >= minute && s.at < minute + MINUTE_MS);
    expect(inMinute.length).toBeGreaterThan(0);
    const mean = inMinute.reduce((n, s) => n + s.values.rss_bytes, 0) / inMinute.length;
    expect(JSON.parse(rows[1].values).rss_bytes).toBeCloseTo(mean, 3);

    await first.close();
    running.splice(running.indexOf(first), 1);
    // What the first run left behind, including the minute it was in when it stopped.
    const check = createPrisma(fresh.databaseUrl);
    const saved = await check.metricSample.findMany({ orderBy: { at: "asc" } });
    await check.$disconnect();
    const stored = saved.map((r) => ({ at: r.at.getTime(), values: completeValues(JSON.parse(r.values)) }));
    expect(stored.length).toBeGreaterThan(rows.length);

    const restartedAt = Date.now();
    const second = await start();
    const history = second.deps.monitoring.sampler.history();
    const firstOwn = history.find((s) => s.at >= restartedAt)?.at ?? Infinity;
    // Everything the first run saved (all within the hour) comes first, ascending, as saved;
    // at most the row of the minute this run has begun sampling in is left to the buffer.
    const expected = stored.filter((r) => r.at + MINUTE_MS <= firstOwn);
    expect(expected.length).toBeGreaterThanOrEqual(stored.length - 1);
    expect(history.slice(0, expected.length)).toEqual(expected);
    const ats = history.map((s) => s.at);
    expect(ats).toEqual([...ats].sort((a, b) => a - b));
  });
});
