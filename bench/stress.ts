import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { TRPCClientError } from "@trpc/client";
import { apiClient } from "../cli/client";
import { Fleet } from "./lib/fleet";
import { announceFrame, bogusResultsFrame, closeAll, openIdle, ProbeVolunteer } from "./lib/hostile";
import { Prober } from "./lib/prober";
import { fetchMetrics, metricValue, scrapeCounters, shedBetween, type ServerCounters } from "./lib/prom";
import { ProcessSampler, readListenOverflows, readRssMb, type PhaseUsage } from "./lib/sampler";
import { createConsumers, startBenchServer } from "./lib/server";
import { round, sleep, summarize, type Summary } from "./lib/stats";
import { fmt, reportMeta, table, writeReport } from "./lib/report";
import { FIRST_WINDOW, MAX_BUFFERED_BYTES } from "../server/coordinator/connection";
import { createPrisma } from "../server/store/prisma";

// `npm run stress`: overload scenarios against a real server process. Job submissions are
// ramped until the knee, volunteer connections are ramped and then opened by the thousand at
// once, and hostile clients (oversized frames, garbage, leases never returned, a reader that
// stops reading, a consumer flooding submissions) are let loose, while a prober checks every
// 250 ms that /api/health and the admin dashboard's data still answer. The report says where
// the server saturates, what it shed and how, and whether it stayed up. `-- --short` is the
// half-minute version that runs inside `npm test`.

const { values: opts } = parseArgs({
  options: {
    short: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    ui: { type: "string", default: "on" },
    /** sqlite (a file, the default) or postgres (a database of the run's own on --pg-url), as in bench.ts. */
    db: { type: "string", default: "sqlite" },
    "pg-url": { type: "string", default: process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres" },
  },
});
if (opts.ui !== "on" && opts.ui !== "off") {
  console.error(`--ui takes "on" or "off", not "${opts.ui}"`);
  process.exit(2);
}
if (opts.db !== "sqlite" && opts.db !== "postgres") {
  console.error(`--db takes "sqlite" or "postgres", not "${opts.db}"`);
  process.exit(2);
}
const SHORT = opts.short;
const plan = SHORT
  ? {
      submit: { rates: [20, 40, 80, 160], stepS: 1, consumers: 20, volunteers: 20, chunks: 20, pastKnee: 0, through: 0 },
      ramp: [100, 250, 500],
      burst: 1000, pastCap: 50,
      leaseSeconds: 1.5,
      hostile: { clients: 3, takers: 4, takerThreads: 4, takerJobChunks: 48, honest: 10, readerThreads: 8, flood: 200, floodConcurrency: 32, steadyPerSecond: 5, steadySeconds: 2 },
    }
  : {
      // Past the knee, one step more, and at least up to 640/s: the overload the health goal names.
      submit: { rates: [10, 20, 40, 80, 160, 320, 640, 1280], stepS: 10, consumers: 130, volunteers: 100, chunks: 20, pastKnee: 1, through: 640 },
      ramp: [250, 500, 1000, 2000],
      burst: 5000, pastCap: 200,
      leaseSeconds: 5,
      hostile: { clients: 10, takers: 10, takerThreads: 4, takerJobChunks: 200, honest: 50, readerThreads: 32, flood: 1000, floodConcurrency: 64, steadyPerSecond: 10, steadySeconds: 5 },
    };
const THREADS = 4;
/** Above this p99 a submission step does not count as served, whatever got through. */
const SANE_P99_MS = 1000;
const MAX_WS_MESSAGE_BYTES = 4 * 1024 * 1024;
const SUBMISSIONS_PER_SECOND = 20; // the server's default, which this run keeps

const log = (m: string) => (opts.json ? process.stderr : process.stdout).write(`${m}\n`);

type Stat = number | string | boolean | null;
interface Scenario {
  name: string;
  description: string;
  passed: boolean;
  findings: string[];
  stats: Record<string, Stat>;
  series?: Array<Record<string, number>>;
}
interface Phase {
  name: string;
  startS: number;
  endS: number;
  usage: PhaseUsage;
  /** Connections the kernel dropped meanwhile for a full accept queue (machine-wide; null off Linux). */
  listenOverflows: number | null;
}

const ms = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? null : round(x, 1));
const trpcCode = (e: unknown) => (e instanceof TRPCClientError ? ((e.data as { code?: string } | undefined)?.code ?? null) : null);
/** Refused at once, to be tried again later: the account's rate (429) or the server's overload (503). */
const shedCode = (e: unknown) => trpcCode(e) === "TOO_MANY_REQUESTS" || trpcCode(e) === "SERVICE_UNAVAILABLE";
const isTimeout = (e: unknown) => /abort|timeout/i.test(`${(e as Error).name} ${(e as Error).message} ${String((e as { cause?: unknown }).cause)}`);

async function main() {
  const started = new Date();
  const server = await startBenchServer({
    ui: opts.ui !== "off",
    postgresUrl: opts.db === "postgres" ? opts["pg-url"] : undefined,
    env: {
      // Short leases, so leases that are never returned expire within the run.
      LEASE_SECONDS: String(plan.leaseSeconds),
      // The burst fills the cap exactly; the sub-step after it goes past.
      MAX_VOLUNTEER_CONNECTIONS: String(plan.burst),
      MAX_WS_MESSAGE_BYTES: String(MAX_WS_MESSAGE_BYTES),
    },
  });
  log(`server ${server.url} (pid ${server.pid}, UI ${opts.ui}, ${opts.db}) up; RSS ${fmt(readRssMb(server.pid))} MB`);
  const t0 = performance.now();
  const sampler = new ProcessSampler(server.pid, server.url, SHORT ? 250 : 500).start();
  const prober = new Prober(server.url, server.apiKey, t0).start();
  const admin = apiClient({ url: server.url, apiKey: server.apiKey });
  /**
   * The server's counters, retried for up to a minute: an overloaded server may take longer than
   * one scrape's timeout to answer, and that is a finding (the probes record it), not a reason
   * to abandon the run. `at` is when they were read.
   */
  const counters = async (): Promise<ServerCounters & { at: number }> => {
    const deadline = performance.now() + 60_000;
    for (;;) {
      try {
        const c = await scrapeCounters(server.url);
        return { ...c, at: performance.now() };
      } catch (e) {
        if (performance.now() > deadline || !server.alive()) throw e;
        await sleep(250);
      }
    }
  };
  const countersBefore = await counters();
  const phases: Phase[] = [];
  const phase = async <T>(name: string, body: () => Promise<T>): Promise<T & { usage: PhaseUsage; startS: number; endS: number; listenOverflows: number | null }> => {
    const from = sampler.mark();
    const overflowsBefore = readListenOverflows();
    const startS = round((performance.now() - t0) / 1000);
    const out = await body();
    // At least one sample inside every phase, however short.
    await sleep(SHORT ? 260 : 510);
    const overflowsAfter = readListenOverflows();
    const listenOverflows = overflowsBefore === undefined || overflowsAfter === undefined ? null : overflowsAfter - overflowsBefore;
    const p = { name, startS, endS: round((performance.now() - t0) / 1000), usage: sampler.usage(from), listenOverflows };
    phases.push(p);
    return { ...out, usage: p.usage, startS: p.startS, endS: p.endS, listenOverflows };
  };
  /** Probe failures and the slowest answers while a phase ran. */
  const probesDuring = (fromS: number, toS: number) => {
    const points = prober.between(fromS, toS);
    const failed = points.filter((p) => p.healthMs === null || p.adminMs === null);
    const max = (xs: Array<number | null>) => Math.max(0, ...xs.filter((x): x is number => x !== null));
    const healthP99Ms = round(summarize(points.flatMap((p) => (p.healthMs === null ? [] : [p.healthMs]))).p99, 1);
    return { probes: points.length, failures: failed.length, healthP99Ms, healthMaxMs: round(max(points.map((p) => p.healthMs)), 1), adminMaxMs: round(max(points.map((p) => p.adminMs)), 1) };
  };

  // ---- helpers over the server's own figures ----
  async function waitIdle(timeoutMs: number): Promise<ServerCounters> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const c = await counters();
      if ((c.tasksQueued === 0 && c.tasksRunning === 0) || performance.now() > deadline) return c;
      await sleep(100);
    }
  }
  /** Cancels every job still running (as the admin), so the next scenario starts from an empty queue. */
  async function cancelRunning() {
    for (let round = 0; round < 20; round++) {
      const running = await admin.admin.jobs.query({ state: "running", limit: 500 });
      if (!running.length) return;
      await Promise.all(running.map((j) => admin.jobs.cancel.mutate({ id: j.id }).catch(() => undefined)));
    }
  }
  async function waitConnections(atMost: number, timeoutMs = 20_000) {
    const deadline = performance.now() + timeoutMs;
    while ((await counters()).connections > atMost && performance.now() < deadline) await sleep(50);
  }

  const scenarios: Scenario[] = [];
  let harnessFailed = false;
  /**
   * Waits (at most 15 s) until the server's event loop is quiet again: a scenario that starts
   * while the previous one's load drains would have its sockets refused as overloaded.
   */
  const calm = async () => {
    const deadline = performance.now() + 15_000;
    for (let quiet = 0; quiet < 2 && performance.now() < deadline; await sleep(500)) {
      const lag = metricValue(await fetchMetrics(server.url).catch(() => ""), "tabgrid_event_loop_lag_seconds", 1);
      quiet = lag < 0.02 ? quiet + 1 : 0;
    }
  };
  const run = async (name: string, body: () => Promise<Scenario>) => {
    if (!server.alive()) return;
    await calm();
    try {
      scenarios.push(await body());
    } catch (e) {
      harnessFailed = true;
      log(`scenario "${name}" could not finish: ${(e as Error).stack ?? e}`);
      scenarios.push({ name, description: "", passed: false, findings: [`The scenario could not finish: ${(e as Error).message}`], stats: {} });
    }
    if (!server.alive()) log(`the server died during "${name}":\n${server.output().slice(-4000)}`);
  };

  // ---- 1. job submissions, ramped until the knee ----
  const ramp: { saturation: number | null; p99AtSaturation: number | null } = { saturation: null, p99AtSaturation: null };
  await run("submission ramp", async () => {
    const { rates, stepS, consumers, volunteers, chunks, pastKnee, through } = plan.submit;
    // The limit is per account: spread over enough of them that it never binds here (the flood
    // scenario shows it binding).
    const keys = await createConsumers(server, consumers);
    const clients = keys.map((apiKey) => apiClient({ url: server.url, apiKey }));
    const fleet = new Fleet(server.url);
    await fleet.connect(volunteers, { threads: THREADS, paused: true });
    fleet.run({ kind: "greedy" }, { active: volunteers, threads: THREADS });
    const input = { kernel: "pi", params: { samples: chunks * 1000 }, chunks, replication: { replicas: 1, adaptive: false } };
    const lag = monitorEventLoopDelay({ resolution: 10 });
    const steps: Array<Record<string, number> & { step: number }> = [];
    const stepFindings: string[] = [];
    let seq = 0;
    let limitedBy = "";
    /** The first step not served, and how many were run past it (full mode shows one more). */
    let kneeAt: number | null = null;
    let beyond = 0;
    try {
      // Warm up first, outside the steps: a fresh server's first submissions compile its queries
      // and code paths (p50 ~110 ms against ~25 warm), and on a loaded machine that alone could
      // push the first step past the knee.
      await phase("submission warm-up", async () => {
        for (let i = 0; i < rates[0]; i += 4) await Promise.all(clients.slice(0, 4).map((c) => c.jobs.submit.mutate(input)));
        await waitIdle(SHORT ? 2000 : 10_000);
      });
      for (const rate of rates) {
        const n = Math.max(1, Math.round(rate * stepS));
        lag.reset();
        lag.enable();
        const cpu0 = process.cpuUsage();
        const c0 = await counters();
        const r = await phase(`submissions at ${rate}/s`, async () => {
          const results: Array<{ latencyMs: number; doneAt: number; outcome: "ok" | "throttled" | "error" | "timeout"; error?: string }> = [];
          const start = performance.now() + 10;
          const inFlight: Array<Promise<void>> = [];
          // Open model: each request leaves at its scheduled time whatever the earlier ones are
          // doing, and its latency counts from that time (no coordinated omission).
          await new Promise<void>((resolve) => {
            let i = 0;
            const tick = () => {
              const now = performance.now();
              while (i < n && start + (i * 1000) / rate <= now) {
                const at = start + (i * 1000) / rate;
                const client = clients[seq++ % clients.length];
                i++;
                inFlight.push(client.jobs.submit.mutate(input, { signal: AbortSignal.timeout(10_000) }).then(
                  () => void results.push({ latencyMs: performance.now() - at, doneAt: performance.now(), outcome: "ok" }),
                  (e: unknown) => void results.push({
                    latencyMs: performance.now() - at, doneAt: performance.now(),
                    outcome: shedCode(e) ? "throttled" : isTimeout(e) ? "timeout" : "error", error: (e as Error).message,
                  }),
                ));
              }
              if (i < n) setTimeout(tick, 1);
              else resolve();
            };
            tick();
          });
          await Promise.all(inFlight);
          const ok = results.filter((x) => x.outcome === "ok");
          const spanS = Math.max(stepS, ((ok.length ? Math.max(...ok.map((x) => x.doneAt)) : start) - start) / 1000);
          return {
            n, ok: ok.length, spanS, summary: summarize(results.map((x) => x.latencyMs)),
            throttled: results.filter((x) => x.outcome === "throttled").length,
            timeouts: results.filter((x) => x.outcome === "timeout").length,
            errors: results.filter((x) => x.outcome === "error"),
          };
        });
        lag.disable();
        const cpu = process.cpuUsage(cpu0);
        const clientCpu = (100 * (cpu.user + cpu.system)) / 1e6 / ((r.endS - r.startS) || 1);
        const accepted = r.ok / r.spanS;
        const c1 = await counters();
        // Time spent in group commits per second of the step: near or over 1, the database writer
        // is the bottleneck (over 1 when commits overlap).
        const between = (c1.at - c0.at) / 1000;
        const writerBusy = (c1.commitSeconds - c0.commitSeconds) / between;
        const probes = probesDuring(r.startS, r.endS);
        const idle = await waitIdle(SHORT ? 2000 : 10_000);
        const point = {
          step: rate, offered: rate, accepted: round(accepted, 1), requests: r.n, ok: r.ok, throttled: r.throttled, errors: r.errors.length, timeouts: r.timeouts,
          p50Ms: round(r.summary.p50, 1), p99Ms: round(r.summary.p99, 1), maxMs: round(r.summary.max, 1),
          serverCpuPercent: round(r.usage.cpuPercentMean, 0), serverLagP99Ms: round(r.usage.lagP99MsMax, 1), serverRssMb: round(r.usage.rssMbMax, 0),
          clientCpuPercent: round(clientCpu, 0), clientLagP99Ms: round(lag.percentile(99) / 1e6, 1), backlogTasks: idle.tasksQueued,
          commitMsPerSecond: round(1000 * writerBusy, 0), commitsPerSecond: round((c1.commits - c0.commits) / between, 0),
          probeFailures: probes.failures, healthP99Ms: probes.healthP99Ms, healthMaxMs: probes.healthMaxMs,
          dispatchPaused: c1.shed["dispatch-paused"] - c0.shed["dispatch-paused"],
        };
        steps.push(point);
        const served = accepted >= 0.9 * rate && r.summary.p99 <= SANE_P99_MS;
        log(`submissions at ${rate}/s: accepted ${fmt(accepted, 1)}/s, ${r.throttled} throttled, ${r.errors.length + r.timeouts} failed, p50 ${fmt(r.summary.p50, 1)} ms, p99 ${fmt(r.summary.p99, 1)} ms (server CPU ${fmt(r.usage.cpuPercentMean, 0)}%, client CPU ${fmt(clientCpu, 0)}%; health p99 ${fmt(probes.healthP99Ms, 0)} ms, ${probes.failures} probes failed)${served ? "" : " — past the knee"}`);
        if (r.errors.length) stepFindings.push(`At ${rate}/s, ${r.errors.length} submissions failed: ${[...new Set(r.errors.map((e) => e.error))].slice(0, 3).join("; ")}.`);
        if (idle.tasksQueued > 0) stepFindings.push(`After the ${rate}/s step the volunteers had not caught up: ${fmt(idle.tasksQueued, 0)} tasks still queued.`);
        if (served && !limitedBy) {
          ramp.saturation = rate;
          ramp.p99AtSaturation = round(r.summary.p99, 1);
          continue;
        }
        if (limitedBy) {
          if (++beyond > pastKnee && rate >= through) break;
          continue;
        }
        // The first step not served is the knee: say what ran out.
        if (r.throttled > 0.05 * r.n) limitedBy = `the per-account submission limit (${r.throttled} of ${r.n} answered TOO_MANY_REQUESTS over ${consumers} accounts)`;
        else if (writerBusy >= 0.6 && (writerBusy * 100 >= r.usage.cpuPercentMean || r.usage.cpuPercentMean < 75)) limitedBy = `the database writer: group commits (results, and each finished job's settlement) took ${fmt(1000 * writerBusy, 0)} ms per second, ${fmt(point.commitsPerSecond, 0)} commits a second, with the server's CPU at ${fmt(r.usage.cpuPercentMean, 0)}%; submissions and acknowledgements wait for it`;
        else if (r.usage.cpuPercentMean >= 75) limitedBy = `the server's one event loop: ${fmt(r.usage.cpuPercentMean, 0)}% of a core on average (loop lag p99 up to ${fmt(r.usage.lagP99MsMax, 0)} ms), with group commits taking ${fmt(1000 * writerBusy, 0)} ms per second; each submission is a write transaction, ${chunks} tasks to dispatch and commit, and a settlement when the job ends`;
        else if (point.clientLagP99Ms > 50 || clientCpu >= 85) limitedBy = `the load generator itself (this process: ${fmt(clientCpu, 0)}% CPU, event-loop lag p99 ${fmt(point.clientLagP99Ms, 0)} ms) on a machine it shares with the server`;
        else if (r.errors.length + r.timeouts) limitedBy = `failed submissions (${r.errors.length} errors, ${r.timeouts} timeouts)`;
        else limitedBy = `latency, with neither the server's CPU (${fmt(r.usage.cpuPercentMean, 0)}%) nor its database writer (commits ${fmt(1000 * writerBusy, 0)} ms per second) saturated: p99 ${fmt(r.summary.p99, 0)} ms, server loop lag p99 up to ${fmt(r.usage.lagP99MsMax, 0)} ms`;
        kneeAt = rate;
        if (beyond++ >= pastKnee && rate >= through) break;
      }
    } finally {
      fleet.pause();
      await fleet.close();
      await cancelRunning();
    }
    // Jobs the server created, against submissions the clients saw succeed: the difference was
    // carried out after its client had given up (nothing else has submitted yet).
    const db = createPrisma(server.databaseUrl);
    const jobsCreated = await db.job.count().finally(() => db.$disconnect());
    const okTotal = steps.reduce((s, p) => s + p.ok, 0);
    const top = steps.find((p) => p.step === kneeAt) ?? steps.at(-1)!;
    const kneeReached = limitedBy !== "";
    const after = steps.filter((p) => kneeAt !== null && p.step > kneeAt);
    const findings = [
      ramp.saturation === null
        ? `Even the first step (${rates[0]}/s) was not served: ${limitedBy}.`
        : kneeReached
          ? `Saturation at ${ramp.saturation} submissions/s (${fmt(ramp.saturation * chunks, 0)} tasks/s of ${chunks}-chunk jobs) with p99 ${fmt(ramp.p99AtSaturation, 0)} ms; at ${top.step}/s offered, ${fmt(top.accepted, 0)}/s were accepted with p99 ${fmt(top.p99Ms, 0)} ms. Limited by ${limitedBy}.`
          : `Not saturated: the highest step, ${ramp.saturation}/s, was still served (p99 ${fmt(ramp.p99AtSaturation, 0)} ms); the knee is higher.`,
      ...after.map((p) => `Past the knee, at ${p.step}/s offered: ${fmt(p.accepted, 0)}/s accepted, ${p.throttled} throttled, ${p.errors + p.timeouts} failed, p99 ${fmt(p.p99Ms, 0)} ms.`),
      ...stepFindings,
    ];
    if (jobsCreated > okTotal) {
      findings.push(`Weakness: ${jobsCreated - okTotal} submissions whose client gave up after 10 s were carried out anyway (${fmt(jobsCreated, 0)} jobs created for ${fmt(okTotal, 0)} answered): a mutation goes on when its client leaves, and jobs.submit has no idempotency key, so a client that retries on timeout pays twice.`);
    }
    const overloaded = steps.filter((p) => p.timeouts > 0 || p.probeFailures > 0);
    if (overloaded.length) {
      const worst = overloaded.reduce((a, b) => (b.timeouts + b.probeFailures > a.timeouts + a.probeFailures ? b : a));
      findings.push(`Weakness: nothing sheds submissions past the knee. At ${worst.step}/s offered, requests queued until ${worst.timeouts} of ${worst.requests} gave up after 10 s (p99 ${fmt(worst.p99Ms, 0)} ms) and ${worst.probeFailures} health/admin probes went unanswered (slowest health ${fmt(worst.healthMaxMs / 1000, 1)} s). A server-wide limit on submissions in flight, answering at once with TOO_MANY_REQUESTS, would keep latency bounded and the server responsive.`);
    }
    return {
      name: "submission ramp",
      description: `Open-model job submissions (pi, ${chunks} chunks, one replica) doubling every ${stepS} s from ${rates[0]}/s over ${consumers} accounts, computed by ${volunteers} headless volunteers × ${THREADS} threads. A step is served when ≥ 90% of the offered rate is accepted with p99 ≤ ${SANE_P99_MS} ms.`,
      passed: ramp.saturation !== null,
      findings,
      stats: {
        saturation_per_s: ramp.saturation, p99_ms_at_saturation: ramp.p99AtSaturation, knee_reached: kneeReached, limited_by: limitedBy || null,
        consumers, volunteers, chunks_per_job: chunks, steps: steps.length,
        throttled: steps.reduce((s, p) => s + p.throttled, 0), errors: steps.reduce((s, p) => s + p.errors + p.timeouts, 0),
        requests: steps.reduce((s, p) => s + p.requests, 0), jobs_created: jobsCreated,
      },
      series: steps,
    };
  });

  // ---- 2. volunteer connections, ramped ----
  let connectionsRampMax = 0;
  await run("connection ramp", async () => {
    await waitConnections(0);
    const open: ProbeVolunteer[] = [];
    const base = readRssMb(server.pid) ?? NaN;
    const steps: Array<Record<string, number> & { step: number }> = [];
    const findings: string[] = [];
    let failed = 0;
    for (const target of plan.ramp) {
      const r = await phase(`${target} volunteer connections`, async () => {
        const at = performance.now();
        const { volunteers, outcomes } = await openIdle(server.url, target - open.length, { parallel: 100, prefix: "ramp", retryOverloaded: true });
        open.push(...volunteers);
        const seconds = (performance.now() - at) / 1000;
        await sleep(500);
        const c = await counters();
        return { outcomes, seconds, connections: c.connections, heapMb: c.heapUsedMb, rssMb: readRssMb(server.pid) ?? NaN };
      });
      const welcomed = r.outcomes.filter((o) => o.welcomed);
      const hs = summarize(welcomed.map((o) => o.handshakeMs!));
      failed += r.outcomes.length - welcomed.length;
      if (welcomed.length < r.outcomes.length) {
        const why = [...new Set(r.outcomes.filter((o) => !o.welcomed).map((o) => (o.closed ? `closed ${o.closed.code} ${o.closed.reason}` : o.error)))];
        findings.push(`Ramping to ${target}: ${r.outcomes.length - welcomed.length} sockets were not welcomed (${why.slice(0, 3).join("; ")}).`);
      }
      connectionsRampMax = Math.max(connectionsRampMax, r.connections);
      steps.push({
        step: target, connections: r.connections, opened: r.outcomes.length, welcomed: welcomed.length,
        handshakeP50Ms: round(hs.p50, 1), handshakeP99Ms: round(hs.p99, 1), handshakeMaxMs: round(hs.max, 1), seconds: round(r.seconds, 2),
        rssMb: round(r.rssMb, 0), heapUsedMb: round(r.heapMb, 0), serverCpuPercent: round(r.usage.cpuPercentMean, 0), serverLagP99Ms: round(r.usage.lagP99MsMax, 1),
      });
      log(`${target} volunteer connections: ${r.connections} open, hello→welcome p50 ${fmt(hs.p50, 1)} ms, p99 ${fmt(hs.p99, 1)} ms; opened in ${fmt(r.seconds, 2)} s; RSS ${fmt(r.rssMb, 0)} MB`);
    }
    await closeAll(open);
    const first = steps[0];
    const last = steps.at(-1)!;
    // Between the first and the last step, so the server's baseline cancels out. The heap, not
    // RSS: RSS keeps the high-water mark of the submission ramp before.
    const perThousand = last.connections > first.connections ? ((last.heapUsedMb - first.heapUsedMb) / (last.connections - first.connections)) * 1000 : NaN;
    const memory = perThousand >= 0.5
      ? `about ${fmt(perThousand, 1)} MB of heap per 1,000 connections`
      : "no growth that stands out from the garbage collector's swings";
    findings.unshift(`${fmt(last.connections, 0)} idle volunteers held with hello→welcome p99 ${fmt(last.handshakeP99Ms, 0)} ms at the last step (100 handshakes in flight); heap ${fmt(first.heapUsedMb, 0)} MB at ${fmt(first.connections, 0)} → ${fmt(last.heapUsedMb, 0)} MB at ${fmt(last.connections, 0)} (RSS ${fmt(first.rssMb, 0)} → ${fmt(last.rssMb, 0)} MB): ${memory}.`);
    return {
      name: "connection ramp",
      description: `Idle volunteer sockets (hello with 0 threads) opened 100 at a time up to ${plan.ramp.join(", ")}, kept open: handshake time and server memory per step.`,
      passed: failed === 0,
      findings,
      stats: {
        max_connections: connectionsRampMax, not_welcomed: failed, rss_mb_before: round(base, 0), rss_mb_at_max: last.rssMb, heap_mb_at_max: last.heapUsedMb,
        heap_mb_per_1000_connections: Number.isFinite(perThousand) ? round(perThousand, 1) : null,
      },
      series: steps,
    };
  });

  // ---- 3. a burst of connections at once, then past the cap ----
  const burst = { accepted: 0, refused: 0, seconds: null as number | null };
  await run("connection burst", async () => {
    await waitConnections(0);
    await sleep(200);
    const before = await counters();
    // Anything still open (a scenario that could not clean up) takes places under the cap.
    const openBefore = before.connections;
    const rssBefore = readRssMb(server.pid) ?? NaN;
    const r = await phase(`burst of ${plan.burst} connections`, async () => {
      const at = performance.now();
      const { volunteers, outcomes } = await openIdle(server.url, plan.burst, { prefix: "burst", timeoutMs: 90_000, retryOverloaded: true });
      const lastWelcome = Math.max(at, ...volunteers.map((v) => v.welcomedAt ?? at));
      await sleep(300);
      const c = await counters();
      return { volunteers, outcomes, seconds: (lastWelcome - at) / 1000, rssMb: readRssMb(server.pid) ?? NaN, connections: c.connections, heapMb: c.heapUsedMb };
    });
    const probes = probesDuring(r.startS, r.endS);
    const accepted = r.outcomes.filter((o) => o.welcomed).length;
    // Why the others were not welcomed: a close code, or the client-side error.
    const codes = new Map<string, number>();
    for (const o of r.outcomes) {
      if (o.welcomed) continue;
      const why = o.closed ? `close ${o.closed.code}` : (o.error ?? "unknown");
      codes.set(why, (codes.get(why) ?? 0) + 1);
    }
    const refused = r.outcomes.filter((o) => o.closed?.code === 1013).length;
    // Sockets the server turned away while it was behind, and that came back as real clients do.
    const retried = r.outcomes.filter((o) => o.retries > 0).length;
    const retries = r.outcomes.reduce((s, o) => s + o.retries, 0);
    Object.assign(burst, { accepted, refused, seconds: round(r.seconds, 2) });
    const hs = summarize(r.outcomes.filter((o) => o.welcomed).map((o) => o.connectMs!));
    log(`burst of ${plan.burst}: ${accepted} welcomed in ${fmt(r.seconds, 2)} s (connect→welcome p50 ${fmt(hs.p50, 0)} ms, p99 ${fmt(hs.p99, 0)} ms), ${plan.burst - accepted} not (${[...codes].map(([c, k]) => `${k}× ${c}`).join(", ") || "none"}); ${retried} came back after an overloaded refusal (${retries} retries); RSS ${fmt(rssBefore, 0)} → ${fmt(r.rssMb, 0)} MB; probes ${probes.failures} failed, health max ${probes.healthMaxMs} ms, admin max ${probes.adminMaxMs} ms`);

    // Past the cap: the server is full, so every one of these is refused at once with 1013.
    const over = await phase(`${plan.pastCap} connections past the cap`, async () => openIdle(server.url, plan.pastCap, { prefix: "over", timeoutMs: 10_000 }));
    const overRefused = over.outcomes.filter((o) => o.closed?.code === 1013);
    const overMs = summarize(over.volunteers.filter((v) => v.closed).map((v) => (v.welcomedAt ?? performance.now()) - v.startedAt));
    // And the cap frees up: a few leave, as many others get in.
    const leaving = Math.min(plan.pastCap, r.volunteers.length);
    await closeAll(r.volunteers.splice(0, leaving));
    await waitConnections(r.connections - leaving);
    await sleep(100);
    const again = await openIdle(server.url, leaving, { prefix: "again", timeoutMs: 10_000 });
    const againWelcomed = again.outcomes.filter((o) => o.welcomed).length;
    const after = await counters();
    const shedRefused = after.shed["connection-refused"] - before.shed["connection-refused"];
    const shedOverloaded = (after.shed["overloaded"] ?? 0) - (before.shed["overloaded"] ?? 0);
    await closeAll([...r.volunteers, ...over.volunteers, ...again.volunteers]);
    log(`past the cap (${plan.burst}): ${overRefused.length} of ${plan.pastCap} refused with 1013; after ${leaving} left, ${againWelcomed} of ${leaving} got in; connection-refused counted ${shedRefused}`);

    const findings = [
      `${fmt(accepted, 0)} of ${fmt(plan.burst, 0)} volunteers opened at once were welcomed within ${fmt(r.seconds, 2)} s (connect→welcome p50 ${fmt(hs.p50, 0)} ms, p99 ${fmt(hs.p99, 0)} ms); heap ${fmt(before.heapUsedMb, 0)} → ${fmt(r.heapMb, 0)} MB, RSS ${fmt(rssBefore, 0)} → ${fmt(r.rssMb, 0)} MB.`,
      ...(retries ? [`${fmt(retried, 0)} sockets were refused at first with 1013 because the server's event loop was behind, and got in when they came back (${fmt(retries, 0)} retries, 1.5–4.5 s apart, as real clients wait); tabgrid_load_shed_total{reason="overloaded"} rose by ${fmt(shedOverloaded, 0)} over the scenario.`] : []),
      codes.size ? `Not welcomed: ${[...codes].map(([c, k]) => `${k} × ${c}`).join(", ")}${openBefore ? ` (${openBefore} volunteers were still connected before the burst)` : ""}.` : "No socket of the burst was refused or failed.",
      `Health and admin probes during the burst: ${probes.failures} failures of ${probes.probes}, slowest /api/health ${fmt(probes.healthMaxMs, 0)} ms, slowest admin data ${fmt(probes.adminMaxMs, 0)} ms.`,
      ...(Math.max(probes.healthMaxMs, probes.adminMaxMs) > SANE_P99_MS
        ? [`Weakness: /api/health and the admin data were held up to ${fmt(Math.max(probes.healthMaxMs, probes.adminMaxMs) / 1000, 1)} s while the hellos were handled; the server's CPU was at ${fmt(r.usage.cpuPercentMean, 0)}% on average (max ${fmt(r.usage.cpuPercentMax, 0)}%), its loop at most ${fmt(r.usage.lagMaxMs, 0)} ms behind${r.listenOverflows ? `, and the kernel dropped ${fmt(r.listenOverflows, 0)} connections for a full accept queue (a probe whose new connection is dropped waits 1 s, then 3 s, for its SYN to be sent again)` : ""}.`]
        : []),
      `With the server full (MAX_VOLUNTEER_CONNECTIONS=${plan.burst}), ${overRefused.length} of ${plan.pastCap} more were refused with close code 1013 "${overRefused[0]?.closed?.reason ?? "–"}" in p50 ${fmt(overMs.p50, 0)} ms; after ${leaving} volunteers left, ${againWelcomed} of ${leaving} new ones got in. tabgrid_load_shed_total{reason="connection-refused"} rose by ${shedRefused}.`,
    ];
    return {
      name: "connection burst",
      description: `${fmt(plan.burst, 0)} idle volunteer sockets opened in the same instant against a server capped at ${fmt(plan.burst, 0)}, then ${plan.pastCap} more past the cap, then ${leaving} leave and as many others connect.`,
      passed: accepted === plan.burst && overRefused.length === plan.pastCap && againWelcomed === leaving && shedRefused === overRefused.length + refused && probes.failures === 0,
      findings,
      stats: {
        connections: plan.burst, open_before: openBefore, accepted, refused, not_welcomed: plan.burst - accepted, seconds: round(r.seconds, 2),
        connect_p50_ms: round(hs.p50, 1), connect_p99_ms: round(hs.p99, 1), rss_mb_before: round(rssBefore, 0), rss_mb_after: round(r.rssMb, 0), rss_mb_max: round(r.usage.rssMbMax, 0),
        heap_mb_before: round(before.heapUsedMb, 0), heap_mb_after: round(r.heapMb, 0),
        cap: plan.burst, past_cap: plan.pastCap, past_cap_refused_1013: overRefused.length, refusal_reason: overRefused[0]?.closed?.reason ?? null,
        rejoined: againWelcomed, shed_connection_refused: shedRefused, retried_after_overloaded: retried, overloaded_retries: retries, shed_overloaded: shedOverloaded,
        probes: probes.probes, probe_failures: probes.failures, health_max_ms: probes.healthMaxMs, admin_max_ms: probes.adminMaxMs,
      },
    };
  });

  // ---- 4. hostile clients ----
  const h = plan.hostile;
  const honest = new Fleet(server.url);
  const submitPi = (client: ReturnType<typeof apiClient>, chunks: number) =>
    client.jobs.submit.mutate({ kernel: "pi", params: { samples: chunks * 1000 }, chunks, replication: { replicas: 1, adaptive: false } });
  const jobDone = async (id: string, timeoutMs: number) => {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const j = await admin.jobs.get.query({ id });
      if (j.state !== "running" || performance.now() > deadline) return j;
      await sleep(50);
    }
  };

  await run("hostile: oversized frames", async () => {
    const before = await counters();
    const r = await phase("oversized frames", async () => {
      // Only the header of a frame too large: the server refuses it before reading any payload.
      const announced = await Promise.all(Array.from({ length: h.clients }, () => announceFrame(server.url, MAX_WS_MESSAGE_BYTES + 1)));
      // The whole frame, as a real client sends it.
      const clients = Array.from({ length: h.clients }, () => new ProbeVolunteer(server.url, { prefix: "big", hello: false }));
      await Promise.all(clients.map((c) => c.opened()));
      const frame = JSON.stringify({ type: "hello", name: "x".repeat(MAX_WS_MESSAGE_BYTES) });
      for (const c of clients) c.send(frame);
      return { announced, closed: await Promise.all(clients.map((c) => c.waitClosed(10_000))), replies: clients.reduce((s, c) => s + c.messages.length, 0) };
    });
    const after = await counters();
    const with1009 = r.announced.filter((c) => "code" in c && c.code === 1009).length;
    const wholeCodes = r.closed.map((c) => c?.code ?? null);
    const shed = after.shed["frame-too-large"] - before.shed["frame-too-large"];
    const findings = [
      `${with1009} of ${h.clients} clients that announced a frame of ${fmt(MAX_WS_MESSAGE_BYTES / 2 ** 20, 1)} MiB + 1 byte were closed with 1009 (message too big) on the header alone; tabgrid_load_shed_total{reason="frame-too-large"} rose by ${shed} for the ${2 * h.clients} sockets.`,
      `${wholeCodes.filter((c) => c !== null).length} of ${h.clients} clients that sent the whole frame were disconnected (close codes: ${[...new Set(wholeCodes)].join(", ")}), with ${r.replies} replies.`,
    ];
    if (wholeCodes.some((c) => c !== 1009)) {
      findings.push("Weakness: a client that sends the whole frame sees 1006 (connection reset), not 1009: the coordinator terminates the socket as soon as ws reports the error, right after ws queued its 1009 close frame, and with the rest of the frame still unread the kernel answers with a reset that discards it. Closing with 1009 and terminating only if the client does not finish the close would tell browsers why.");
    }
    return {
      name: "hostile: oversized frames",
      description: `${h.clients} clients announce a frame over MAX_WS_MESSAGE_BYTES (${fmt(MAX_WS_MESSAGE_BYTES / 2 ** 20, 1)} MiB) and ${h.clients} send one whole.`,
      passed: with1009 === h.clients && wholeCodes.every((c) => c !== null) && shed === 2 * h.clients,
      findings,
      stats: {
        clients: 2 * h.clients, closed_1009: with1009, whole_frame_close_codes: [...new Set(wholeCodes)].join(","), shed_frame_too_large: shed,
        announce_errors: r.announced.filter((c) => "error" in c).length,
      },
    };
  });

  await run("hostile: garbage frames", async () => {
    const before = await counters();
    const r = await phase("garbage frames", async () => {
      const clients = Array.from({ length: h.clients }, () => new ProbeVolunteer(server.url, { prefix: "junk", hello: false }));
      await Promise.all(clients.map((c) => c.opened()));
      for (const c of clients) for (let i = 0; i < 30; i++) c.send(i % 2 ? `{"type":"results","results":"nope ${i}"}` : `garbage ${i} {`);
      const closed = await Promise.all(clients.map((c) => c.waitClosed(10_000)));
      return { closed, errors: clients.map((c) => c.count("error")) };
    });
    const after = await counters();
    const closed1008 = r.closed.filter((c) => c?.code === 1008).length;
    const rejected = after.messagesRejected - before.messagesRejected;
    const errorFrames = r.errors.reduce((a, b) => a + b, 0);
    return {
      name: "hostile: garbage frames",
      description: `${h.clients} clients each send 30 frames of broken JSON or the wrong shape, without a hello.`,
      passed: closed1008 === h.clients && Math.min(...r.errors) >= 19,
      findings: [`Each got an error frame per bad message (${errorFrames} in all) and ${closed1008} of ${h.clients} were closed with 1008 "${r.closed[0]?.reason ?? "–"}"; tabgrid_volunteer_messages_rejected_total rose by ${rejected}.`],
      stats: { clients: h.clients, frames_each: 30, error_frames: errorFrames, closed_1008: closed1008, close_reason: r.closed[0]?.reason ?? null, messages_rejected: rejected },
    };
  });

  await run("hostile: lease takers", async () => {
    const r = await phase("leases never returned", async () => {
      const takers = Array.from({ length: h.takers }, () => new ProbeVolunteer(server.url, { prefix: "taker", hello: { threads: h.takerThreads } }));
      await Promise.all(takers.map((t) => t.outcome(10_000)));
      const at = performance.now();
      const job = await submitPi(admin, h.takerJobChunks);
      const window = h.takers * h.takerThreads * 2;
      const deadline = performance.now() + 5000;
      while (takers.reduce((s, t) => s + t.tasks().length, 0) < Math.min(window, h.takerJobChunks) && performance.now() < deadline) await sleep(10);
      const firstTaken = takers.reduce((s, t) => s + t.tasks().length, 0);
      // Honest volunteers arrive and compute everything else; what the takers hold waits for its lease.
      await honest.connect(h.honest, { threads: 2, paused: true });
      honest.run({ kind: "greedy" }, { active: h.honest, threads: 2 });
      const end = await jobDone(job.id, plan.leaseSeconds * 1000 * 8 + 20_000);
      const seconds = (performance.now() - at) / 1000;
      const taken = takers.reduce((s, t) => s + t.tasks().length, 0);
      const revoked = takers.reduce((s, t) => s + t.messages.reduce((n, m) => n + (m.type === "revoke" ? m.taskIds.length : 0), 0), 0);
      await closeAll(takers);
      return { state: end.state, seconds, firstTaken, taken, revoked };
    });
    const completed = r.state === "completed";
    const findings = [
      `${h.takers} volunteers took ${r.firstTaken} of the ${h.takerJobChunks} units and never answered; their leases expired after ${plan.leaseSeconds} s and were revoked and re-queued (${r.revoked} revocations), and the job ${completed ? `completed in ${fmt(r.seconds, 1)} s` : `was still ${r.state} after ${fmt(r.seconds, 1)} s`}.`,
    ];
    if (r.taken > r.firstTaken) {
      findings.push(`Weakness: the takers were handed ${r.taken - r.firstTaken} more units as their expired leases freed their windows. A volunteer that never returns results is not penalised, so each unit it takes costs a full lease (${plan.leaseSeconds} s here, LEASE_SECONDS=60 by default).`);
    }
    return {
      name: "hostile: lease takers",
      description: `${h.takers} volunteers × ${h.takerThreads} threads take tasks of a ${h.takerJobChunks}-unit job and never return results (LEASE_SECONDS=${plan.leaseSeconds}); ${h.honest} honest volunteers compute the rest.`,
      passed: completed && r.revoked >= r.firstTaken && r.firstTaken > 0,
      findings,
      stats: { takers: h.takers, units: h.takerJobChunks, units_taken_first: r.firstTaken, units_taken_total: r.taken, leases_revoked: r.revoked, lease_seconds: plan.leaseSeconds, job_completed: completed, job_seconds: round(r.seconds, 2) },
    };
  });

  await run("hostile: slow reader", async () => {
    if (!honest.volunteers.length) {
      await honest.connect(h.honest, { threads: 2, paused: true });
      honest.run({ kind: "greedy" }, { active: h.honest, threads: 2 });
    }
    const r = await phase("slow reader", async () => {
      // The reader gets its window while the honest volunteers sit out, then stops reading.
      honest.pause();
      const reader = new ProbeVolunteer(server.url, { prefix: "slow", hello: { threads: h.readerThreads } });
      await reader.outcome(10_000);
      const job = await submitPi(admin, h.readerThreads * 2 * 4);
      const deadline = performance.now() + 5000;
      // A new socket's first window (FIRST_WINDOW), whatever threads it says (and its ringer, if any).
      const window = Math.min(h.readerThreads * 2, FIRST_WINDOW);
      while (reader.tasks().length < window && performance.now() < deadline) await sleep(10);
      const held = reader.tasks().length;
      reader.ws.pause();
      honest.run({ kind: "greedy" }, { active: h.honest, threads: 2 });
      const rssBefore = readRssMb(server.pid) ?? NaN;
      let rssMax = rssBefore;
      // Each of these makes the server answer with an ack about as large, which it must buffer.
      const frame = bogusResultsFrame();
      const left = new RegExp(`volunteer ${reader.identity.volunteerId}~\\d+ left; (\\d+) task`);
      const at = performance.now();
      let sent = 0;
      let requeued: number | null = null;
      const limit = 4 * MAX_BUFFERED_BYTES + 64 * 2 ** 20;
      while (sent * frame.length < limit) {
        const m = left.exec(server.output());
        if (m) {
          requeued = Number(m[1]);
          break;
        }
        if (reader.ws.readyState === reader.ws.OPEN && reader.ws.bufferedAmount < 8 * 2 ** 20) {
          reader.send(frame);
          sent++;
        }
        rssMax = Math.max(rssMax, readRssMb(server.pid) ?? 0);
        await sleep(1);
      }
      const waitLeft = performance.now() + 5000;
      while (requeued === null && performance.now() < waitLeft) {
        const m = left.exec(server.output());
        if (m) requeued = Number(m[1]);
        else await sleep(20);
      }
      const cutOffS = (performance.now() - at) / 1000;
      reader.ws.resume();
      const closed = await reader.waitClosed(10_000);
      const end = await jobDone(job.id, 30_000);
      await reader.close();
      return { held, sent, sentMb: (sent * frame.length) / 2 ** 20, requeued, cutOffS, closed, state: end.state, rssBefore, rssMax, rssAfter: readRssMb(server.pid) ?? NaN };
    });
    const cut = r.requeued !== null;
    const completed = r.state === "completed";
    return {
      name: "hostile: slow reader",
      description: `A volunteer takes ${r.held} tasks, stops reading its socket and sends results for tasks that do not exist (about 2.2 MB a frame), each answered with an ack about as large that the server has to buffer.`,
      // A newcomer holds at most one ringer (a spot-check the server made up, not a unit of the
      // job): it is dropped with the socket, not re-queued.
      passed: cut && completed && r.requeued !== null && r.held - r.requeued >= 0 && r.held - r.requeued <= 1,
      findings: [
        cut
          ? `Cut off after ${fmt(r.sentMb, 0)} MB sent (${r.sent} frames, ${fmt(r.cutOffS, 1)} s): results for tasks it does not hold, past what it could have been sent (STRAY_RESULTS_PER_SECOND), end the connection, and so would more than ${MAX_BUFFERED_BYTES / 2 ** 20} MB waiting for it; the client saw close ${r.closed?.code ?? "–"}${r.closed?.code === 1006 ? " (terminated, no close frame)" : ""}. Its ${r.requeued} leases were re-queued${r.requeued === r.held - 1 ? " (the other task it held was a spot-check, which is dropped, not re-queued)" : ""} and the job ${completed ? "completed" : `is ${r.state}`}.`
          : `Not cut off after ${fmt(r.sentMb, 0)} MB sent: the server kept buffering for a client that does not read.`,
        `Server RSS ${fmt(r.rssBefore, 0)} MB before, ${fmt(r.rssMax, 0)} MB at most while it buffered, ${fmt(r.rssAfter, 0)} MB after.`,
        "Results for unknown tasks are echoed back in the ack, 512 at once and 64 a second past that: a client can no longer make the server write as much as it sends for long. Slow consumers cut off are not counted in tabgrid_load_shed_total (there is no reason for it yet).",
      ],
      stats: {
        tasks_held: r.held, frames_sent: r.sent, mb_sent: round(r.sentMb, 1), cut_off: cut, cut_off_seconds: round(r.cutOffS, 2), close_code: r.closed?.code ?? null,
        leases_requeued: r.requeued, job_completed: completed, rss_mb_before: round(r.rssBefore, 0), rss_mb_max: round(r.rssMax, 0), rss_mb_after: round(r.rssAfter, 0),
        buffer_limit_mb: MAX_BUFFERED_BYTES / 2 ** 20,
      },
    };
  });

  await run("hostile: submission flood", async () => {
    const [flooderKey, steadyKey] = await createConsumers(server, 2, "flood");
    const flooder = apiClient({ url: server.url, apiKey: flooderKey });
    // The other consumer comes back after a call the gate shed before carrying it out (503), as
    // the CLI does: what it must not notice is a failed submission, or one that takes seconds.
    // Its calls shed server-wide (too many submissions in progress) count in the same shed
    // reason as the flooder's: they are counted here too.
    let steadyShed = 0;
    const steady = apiClient({ url: server.url, apiKey: steadyKey, retryShedMs: 2_000, onShedRetry: () => steadyShed++ });
    const before = await counters();
    const r = await phase("submission flood", async () => {
      const flood = { ok: 0, throttled: 0, failed: 0, messages: new Set<string>() };
      let next = 0;
      const at = performance.now();
      const worker = async () => {
        while (next < h.flood) {
          next++;
          try {
            await submitPi(flooder, 20);
            flood.ok++;
          } catch (e) {
            if (shedCode(e)) flood.throttled++;
            else flood.failed++;
            flood.messages.add((e as Error).message);
          }
        }
      };
      // Meanwhile another consumer submits at a steady pace (open model) and must not notice.
      const steadyLatencies: number[] = [];
      let steadyFailed = 0;
      const steadyErrors = new Set<string>();
      const steadyRun = (async () => {
        const n = h.steadyPerSecond * h.steadySeconds;
        const start = performance.now();
        await Promise.all(Array.from({ length: n }, async (_, i) => {
          const due = start + (i * 1000) / h.steadyPerSecond;
          await sleep(Math.max(0, due - performance.now()));
          try {
            await submitPi(steady, 20);
            steadyLatencies.push(performance.now() - due);
          } catch (e) {
            steadyFailed++;
            steadyErrors.add(trpcCode(e) ?? (e as Error).message);
          }
        }));
      })();
      await Promise.all([...Array.from({ length: h.floodConcurrency }, worker), steadyRun]);
      return { flood, seconds: (performance.now() - at) / 1000, steady: summarize(steadyLatencies), steadyFailed, steadyErrors: [...steadyErrors] };
    });
    const after = await counters();
    const probes = probesDuring(r.startS, r.endS);
    const shed = after.shed["submission-throttled"] - before.shed["submission-throttled"];
    const message = [...r.flood.messages][0] ?? null;
    return {
      name: "hostile: submission flood",
      description: `One consumer fires ${h.flood} submissions, ${h.floodConcurrency} at a time; another submits ${h.steadyPerSecond}/s for ${h.steadySeconds} s meanwhile, coming back after a shed call as the CLI does. Limit: ${SUBMISSIONS_PER_SECOND}/s per account, bursts of 60 (the defaults).`,
      passed: r.flood.throttled > 0 && r.flood.failed === 0 && r.steadyFailed === 0 && r.steady.p99 <= SANE_P99_MS && probes.failures === 0,
      findings: [
        `The flooder got ${r.flood.ok} accepted and ${r.flood.throttled} TOO_MANY_REQUESTS (HTTP 429) in ${fmt(r.seconds, 1)} s${message ? `: "${message}"` : ""}; tabgrid_load_shed_total{reason="submission-throttled"} rose by ${shed}.`,
        `The other consumer: ${r.steady.count} of ${h.steadyPerSecond * h.steadySeconds} accepted, ${r.steadyFailed} failed${r.steadyErrors.length ? ` (${r.steadyErrors.join(", ")})` : ""}, p50 ${fmt(r.steady.p50, 0)} ms, p99 ${fmt(r.steady.p99, 0)} ms; probes ${probes.failures} failed (slowest health ${fmt(probes.healthMaxMs, 0)} ms, admin ${fmt(probes.adminMaxMs, 0)} ms).`,
        ...(r.steady.p99 > SANE_P99_MS
          ? [`Weakness: what one account may submit (${SUBMISSIONS_PER_SECOND}/s sustained, 60 at once) is about what the whole server absorbs (saturation ${ramp.saturation ?? "–"}/s in this run): the flooder's ${r.flood.ok} accepted jobs in ${fmt(r.seconds, 1)} s took the server to its knee and the other consumer waited up to ${fmt(r.steady.max / 1000, 1)} s. A global submission budget, or a smaller burst, would keep one account from crowding out the others.`]
          : []),
      ],
      stats: {
        flood_requests: h.flood, flood_accepted: r.flood.ok, flood_throttled: r.flood.throttled, flood_failed: r.flood.failed, too_many_requests_seen: r.flood.throttled > 0,
        message, shed_submission_throttled: shed, other_shed_retried: steadyShed, other_accepted: r.steady.count, other_failed: r.steadyFailed, other_p50_ms: round(r.steady.p50, 1), other_p99_ms: round(r.steady.p99, 1),
        probe_failures: probes.failures,
      },
    };
  });

  // ---- the end ----
  const endCounters = server.alive() ? await counters().catch(() => undefined) : undefined;
  honest.pause();
  await honest.close().catch(() => undefined);
  if (server.alive()) await cancelRunning().catch(() => undefined);
  await prober.stop();
  sampler.stop();
  const alive = server.alive();
  const output = server.output();
  await server.stop();

  const health = prober.points.slice().sort((a, b) => a.t - b.t);
  const healthMs = summarize(health.flatMap((p) => (p.healthMs === null ? [] : [p.healthMs])));
  const adminMs = summarize(health.flatMap((p) => (p.adminMs === null ? [] : [p.adminMs])));
  const failedProbes = health.filter((p) => p.healthMs === null || p.adminMs === null).length;
  const shed = endCounters ? shedBetween(countersBefore, endCounters) : null;
  // Each scenario's phases: health p99 within each.
  const healthSteps = phases.map((p) => probesDuring(p.startS, p.endS)).filter((x) => x.probes > 0);
  const summary = {
    db: opts.db,
    saturation_submissions_per_s: ramp.saturation,
    submit_p99_ms_at_saturation: ramp.p99AtSaturation,
    connections_ramp_max: connectionsRampMax,
    burst_connections: plan.burst,
    burst_accepted: burst.accepted,
    burst_refused: burst.refused,
    burst_seconds: burst.seconds,
    health_probes: health.length,
    health_failures: failedProbes,
    health_p99_ms: round(healthMs.p99, 1),
    health_max_ms: round(healthMs.max, 1),
    /** The worst step's health p99 (submission ramp steps and the burst). */
    health_p99_ms_worst_step: round(Math.max(...healthSteps.map((x) => x.healthP99Ms)), 1),
    admin_max_ms: round(adminMs.max, 1),
    server_alive: alive,
    server_rss_mb_max: round(Math.max(...phases.map((p) => p.usage.rssMbMax)), 1),
    /** Connections the kernel dropped for a full accept queue during the phases (whole machine). */
    accept_queue_drops: phases.some((p) => p.listenOverflows === null) ? null : phases.reduce((a, p) => a + p.listenOverflows!, 0),
    shed: shed ?? {},
    messages_rejected: endCounters ? endCounters.messagesRejected - countersBefore.messagesRejected : null,
    scenarios_passed: scenarios.filter((s) => s.passed).length,
    scenarios_run: scenarios.length,
  };
  const meta = reportMeta("stress", SHORT ? "short" : "full", started, `npm run stress${SHORT ? " -- --short" : ""}${opts.ui === "off" ? " -- --ui off" : ""}${opts.db === "postgres" ? " -- --db postgres" : ""}`);
  const timeline = sampler.samples.map((s) => ({ t: round(s.t, 2), cpuPercent: round(s.cpuPercent, 1), rssMb: round(s.rssMb, 1), lagP99Ms: round(s.lagP99Ms, 2), lagMaxMs: round(s.lagMaxMs, 2) }));
  const report = {
    summary,
    scenarios,
    health: {
      probes: health.length, failures: failedProbes, p50Ms: round(healthMs.p50, 1), p99Ms: round(healthMs.p99, 1), maxMs: round(healthMs.max, 1),
      series: health.map((p) => ({ t: round(p.t, 2), healthMs: ms(p.healthMs), adminMs: ms(p.adminMs) })),
    },
    timeline,
    phases,
  };
  const md = markdown(meta, report, { adminMs, failures: prober.failures, ui: opts.ui });
  const files = writeReport(meta, report, md);
  if (opts.json) process.stdout.write(JSON.stringify({ ...summary, report: files.json }) + "\n");
  else log(`\n${md}\nreport: ${files.md}`);
  if (!alive) {
    console.error(`the server died during the run; its last output:\n${output.slice(-4000)}`);
    return 1;
  }
  return harnessFailed ? 1 : 0;
}

function markdown(
  meta: ReturnType<typeof reportMeta>,
  r: {
    summary: Record<string, unknown> & { shed: Record<string, number> };
    scenarios: Scenario[];
    health: { probes: number; failures: number; p50Ms: number; p99Ms: number; maxMs: number };
    phases: Phase[];
  },
  extra: { adminMs: Summary; failures: Prober["failures"]; ui: string | undefined },
): string {
  const s = r.summary;
  const ramp = r.scenarios.find((x) => x.name === "submission ramp");
  const conns = r.scenarios.find((x) => x.name === "connection ramp");
  const cell = (v: Stat | undefined) => (typeof v === "number" ? fmt(v, 2) : v === null || v === undefined ? "–" : String(v));
  const lines = [
    `# Stress (${meta.mode}) — ${meta.startedAt}`,
    "",
    `Commit ${meta.commit ?? "unknown"} · ${meta.machine.cpus} cores (${meta.machine.cpuModel}) · Node ${meta.machine.node} · ${meta.durationSeconds} s · UI ${extra.ui} · \`${meta.command}\``,
    "",
    "## Verdict",
    `- Server ${s.server_alive ? "**stayed up**" : "**died**"}; /api/health and the admin dashboard's data were probed ${r.health.probes} times (every 250 ms): **${r.health.failures} failed**, health p50 ${fmt(r.health.p50Ms, 1)} ms / p99 ${fmt(r.health.p99Ms, 1)} ms / max ${fmt(r.health.maxMs, 0)} ms, admin data p99 ${fmt(extra.adminMs.p99, 1)} ms / max ${fmt(extra.adminMs.max, 0)} ms.`,
    !ramp || !("knee_reached" in ramp.stats)
      ? "- Saturation: the submission ramp did not finish (see below)."
      : `- Saturation: **${s.saturation_submissions_per_s ?? "–"} job submissions/s** (p99 ${fmt(s.submit_p99_ms_at_saturation as number, 0)} ms)${ramp.stats.knee_reached ? `; limited by ${ramp.stats.limited_by}` : " — not reached, the knee is higher"}.`,
    `- Connections: ramped to ${fmt(s.connections_ramp_max as number, 0)}; a burst of ${fmt(s.burst_connections as number, 0)} at once: ${fmt(s.burst_accepted as number, 0)} welcomed in ${fmt(s.burst_seconds as number, 2)} s, ${fmt(s.burst_refused as number, 0)} refused.`,
    `- Server RSS at most ${fmt(s.server_rss_mb_max as number, 0)} MB. Scenarios passed: ${s.scenarios_passed} of ${s.scenarios_run}.`,
    "",
    "## What the server shed (tabgrid_load_shed_total, during the run)",
    table(["reason", "count", "how"], [
      ["connection-refused", r.summary.shed["connection-refused"] ?? "–", "volunteer socket over MAX_VOLUNTEER_CONNECTIONS: upgraded and closed at once with 1013"],
      ["frame-too-large", r.summary.shed["frame-too-large"] ?? "–", "frame over MAX_WS_MESSAGE_BYTES: socket closed with 1009"],
      ["submission-throttled", r.summary.shed["submission-throttled"] ?? "–", "jobs.submit over the account's rate: TOO_MANY_REQUESTS (429)"],
      ["overloaded", r.summary.shed["overloaded"] ?? "–", "event loop behind (LOAD_SHED_DELAY_MS): a request refused with 503 and Retry-After, or a volunteer socket closed with 1013, before any work"],
      ["dispatch-paused", r.summary.shed["dispatch-paused"] ?? "–", "dispatch held while the database commit backlog was too long"],
      ["(rejected frames)", (s.messages_rejected as number | null) ?? "–", "tabgrid_volunteer_messages_rejected_total: error frame, closed with 1008 after 20"],
    ]),
    "",
    "## Scenarios",
    table(["scenario", "passed", "finding"], r.scenarios.map((x) => [x.name, x.passed ? "yes" : "**no**", x.findings[0] ?? ""])),
    "",
  ];
  const weaknesses = r.scenarios.flatMap((x) => x.findings.filter((f) => f.startsWith("Weakness:")).map((f) => `- ${x.name}: ${f.replace(/^Weakness: /, "")}`));
  if (weaknesses.length) lines.push("## Weaknesses found", ...weaknesses, "");
  if (ramp?.series?.length) {
    lines.push(
      "## Submission ramp (open model)",
      ramp.description,
      "",
      table(["offered/s", "accepted/s", "throttled", "errors", "p50 ms", "p99 ms", "max ms", "server CPU %", "server lag p99 ms", "commit ms per s", "commits/s", "client CPU %", "client lag p99 ms", "tasks left queued"],
        ramp.series.map((p) => [p.offered, fmt(p.accepted, 1), p.throttled, p.errors + p.timeouts, fmt(p.p50Ms, 1), fmt(p.p99Ms, 1), fmt(p.maxMs, 0), fmt(p.serverCpuPercent, 0), fmt(p.serverLagP99Ms, 1), fmt(p.commitMsPerSecond, 0), fmt(p.commitsPerSecond, 0), fmt(p.clientCpuPercent, 0), fmt(p.clientLagP99Ms, 1), p.backlogTasks])),
      "",
    );
  }
  if (conns?.series?.length) {
    lines.push(
      "## Connection ramp",
      conns.description,
      "",
      table(["connections", "hello→welcome p50 ms", "p99 ms", "max ms", "opened in s", "heap MB", "RSS MB", "server CPU %", "server lag p99 ms"],
        conns.series.map((p) => [fmt(p.connections, 0), fmt(p.handshakeP50Ms, 1), fmt(p.handshakeP99Ms, 1), fmt(p.handshakeMaxMs, 1), fmt(p.seconds, 2), fmt(p.heapUsedMb, 0), fmt(p.rssMb, 0), fmt(p.serverCpuPercent, 0), fmt(p.serverLagP99Ms, 1)])),
      "",
    );
  }
  for (const x of r.scenarios) {
    lines.push(`### ${x.name} — ${x.passed ? "passed" : "**not passed**"}`, x.description, "", ...x.findings.map((f) => `- ${f}`), "");
    const stats = Object.entries(x.stats);
    if (stats.length) lines.push(table(["figure", "value"], stats.map(([k, v]) => [k, cell(v)])), "");
  }
  if (extra.failures.length) {
    // Consecutive failed probes (250 ms apart) as one outage.
    const outages: Array<{ from: number; to: number; health: number; admin: number; error: string }> = [];
    for (const f of extra.failures.slice().sort((a, b) => a.t - b.t)) {
      const last = outages.at(-1);
      if (last && f.t - last.to <= 0.6) last.to = f.t;
      else outages.push({ from: f.t, to: f.t, health: 0, admin: 0, error: f.error });
      outages.at(-1)![f.what]++;
    }
    lines.push(
      "## Probe failures",
      table(["from s", "to s", "/api/health failed", "admin data failed", "first error"], outages.map((o) => [fmt(o.from, 2), fmt(o.to, 2), o.health, o.admin, o.error])),
      "",
    );
  }
  lines.push(
    "## Server per phase",
    "Accept-queue drops: connections the kernel dropped because a listening socket's queue was full (TcpExt ListenOverflows, the whole machine's); each waits 1 s, then 3 s, for its SYN to be sent again, however fast the server's loop is.",
    "",
    table(["phase", "from s", "to s", "CPU % mean", "CPU % max", "RSS MB max", "loop lag p99 ms (max)", "loop lag max ms", "accept-queue drops"], r.phases.map((p) => [p.name, p.startS, p.endS, fmt(p.usage.cpuPercentMean, 0), fmt(p.usage.cpuPercentMax, 0), fmt(p.usage.rssMbMax, 0), fmt(p.usage.lagP99MsMax, 1), fmt(p.usage.lagMaxMs, 1), p.listenOverflows ?? "–"])),
    "",
  );
  return lines.join("\n");
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`stress failed: ${e.stack ?? e.message}`);
    process.exit(1);
  },
);
