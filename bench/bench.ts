import { parseArgs } from "node:util";
import { TRPCClientError } from "@trpc/client";
import { apiClient } from "../cli/client";
import { Fleet } from "./lib/fleet";
import { CpuMeter, pidsNamed, postgresPids, ProcessSampler, readRssMb, type PhaseUsage } from "./lib/sampler";
import { callCalcFromOwnProcess, startBenchCluster, startCeilingServer } from "./lib/server";
import { histogram, rateSeries, round, sleep, summarize, type Summary } from "./lib/stats";
import { fmt, reportMeta, table, writeReport } from "./lib/report";
import { fetchMetrics, histogramBetween, metricValue } from "./lib/prom";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { trainingPhase } from "./lib/training";
import { openModel } from "./lib/openModel";

// `npm run bench`: dispatch throughput, open-model overhead, parallel efficiency and
// interactive latency of a real server process, measured from many headless volunteers over
// real WebSockets. `-- --short` is the few-second version that runs inside `npm test`.
// `-- --db postgres --nodes N`: N server processes of one cluster (PostgreSQL and Redis), the
// volunteers spread over them, the jobs submitted through the first.

const USAGE = `npm run bench -- [options]
  --short              a few seconds a phase (as npm test runs it)
  --seconds S          seconds per phase
  --json               one JSON object on stdout, the log on stderr
  --ui on|off          the server's pages (default on)
  --db sqlite|postgres the database (default sqlite; postgres: a database of the run's own on --pg-url)
  --pg-url URL         PostgreSQL server (default BENCH_PG_URL or the local one)
  --nodes N            N server processes of one cluster (needs --db postgres and Redis)
  --cluster            cluster mode with one node
  --redis-url URL      Redis for cluster mode (default BENCH_REDIS_URL or the local one)
  --root DIR           drive another checkout's server, for a before and after
  --profile DIR        write the server's CPU profile into DIR`;
const options = {
  help: { type: "boolean", short: "h", default: false },
  short: { type: "boolean", default: false },
  json: { type: "boolean", default: false },
  /** Another checkout's server (same protocol), to measure a before and an after in one run. */
  root: { type: "string" },
  ui: { type: "string", default: "on" },
  seconds: { type: "string" },
  /** Writes the server's CPU profile (.cpuprofile, for Chrome DevTools) into this directory. */
  profile: { type: "string" },
  /** sqlite (a file, the default) or postgres (a database of the run's own on --pg-url). */
  db: { type: "string", default: "sqlite" },
  "pg-url": { type: "string", default: process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres" },
  /** Server processes; more than one is cluster mode (--db postgres, Redis at --redis-url). */
  nodes: { type: "string", default: "1" },
  /** Cluster mode (slices, Redis) even with one node, to see what it costs by itself. */
  cluster: { type: "boolean", default: false },
  "redis-url": { type: "string", default: process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379" },
} as const;
// A bad flag gets a line and the usage, not a stack trace.
const { values: opts } = (() => {
  try {
    return parseArgs({ options });
  } catch (e) {
    console.error(`npm run bench: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
})();
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
const fail = (m: string): never => {
  console.error(`npm run bench: ${m}`);
  process.exit(2);
};
if (opts.db !== "sqlite" && opts.db !== "postgres") fail(`--db is sqlite or postgres (got ${opts.db})`);
const NODES = Number(opts.nodes);
if (!Number.isInteger(NODES) || NODES < 1 || NODES > 16) fail(`--nodes is a whole number from 1 to 16 (got ${opts.nodes})`);
const CLUSTER = NODES > 1 || opts.cluster;
if (CLUSTER && opts.db !== "postgres") {
  fail(`${NODES > 1 ? `--nodes ${NODES}` : "--cluster"} needs --db postgres: several nodes share one PostgreSQL database (a SQLite file belongs to one process)`);
}
const SHORT = opts.short;
const PHASE_S = Number(opts.seconds ?? (SHORT ? 1 : 5));
if (!(PHASE_S > 0 && PHASE_S <= 3600)) fail(`--seconds is a number of seconds from 0 to 3,600 (got ${opts.seconds})`);
if (opts.ui !== "on" && opts.ui !== "off") fail(`--ui is on or off (got ${opts.ui})`);
const THREADS = 4;
/** How long the connected fleet idles before its settled RSS is read. */
const SETTLE_MS = SHORT ? 1000 : 5000;
const plan = SHORT
  ? { counts: [1, 10, 50], loads: [0.5], efficiency: [10, 50], tasksPerThread: 5, calcPerSecond: 10 }
  : { counts: [1, 10, 100, 1000], loads: [0.25, 0.5, 0.75], efficiency: [10, 100, 1000], tasksPerThread: 20, calcPerSecond: 30 };
const TASK_MS = 100;
/** Overhead is reported for tasks scheduled after this much of a phase (the warm-up is reported apart). */
const WARMUP_MS = SHORT ? 300 : 1000;
/** The training phase: the issue's 100,000 rows × 20 features in 10 shards on 4 CLI volunteers (a small one in the short run). */
const TRAINING = SHORT ? { volunteers: 2, rows: 4000, features: 20, shards: 4, rounds: 5 } : { volunteers: 4, rows: 100_000, features: 20, shards: 10, rounds: 50 };
const OVERHEAD_VOLUNTEERS = 100;
/** The fixed-rate overhead phase: tasks a second over the whole fleet. */
const FIXED_RATE = 1000;
/** Jobs of 16 chunks a second in the submission phase. */
const SMALL_JOBS_PER_SECOND = 10;
const JOB_MAX_UNITS = 10_000;

const log = (m: string) => (opts.json ? process.stderr : process.stdout).write(`${m}\n`);

interface EfficiencyRow {
  volunteers: number;
  tasks: number;
  idealSeconds: number;
  makespanSeconds: number;
  efficiency: number;
  jobSeconds: number | null;
  /** Time a volunteer's thread waited for its next task, summed, per volunteer (ms). */
  gapMsPerVolunteer: number;
  /** The 99th percentile of one such wait (ms). */
  gapP99Ms: number;
  /** Fewest and most tasks one volunteer ran (ringers included): the makespan is the busiest one's. */
  tasksPerVolunteer: [number, number];
  usage?: PhaseUsage;
}

interface Phase {
  name: string;
  startS: number;
  endS: number;
  usage: PhaseUsage;
}

async function main() {
  const started = new Date();
  const cluster = await startBenchCluster({
    ui: opts.ui !== "off", root: opts.root, postgresUrl: opts.db === "postgres" ? opts["pg-url"] : undefined,
    nodes: NODES, redisUrl: CLUSTER ? opts["redis-url"] : undefined,
    nodeArgs: opts.profile ? ["--cpu-prof", `--cpu-prof-dir=${opts.profile}`] : [],
  });
  // A run that fails half way still stops its servers and drops its database and Redis keys.
  stopOnFailure = () => cluster.stop();
  const nodes = cluster.nodes;
  // Jobs are submitted, and calc asked, through the first node; in a cluster the others claim slices of the work.
  const server = nodes[0];
  const pids = nodes.map((n) => n.pid);
  const urls = nodes.map((n) => n.url);
  /** The largest RSS of any node (the per-process figure the RSS targets are about). */
  const rssMb = () => Math.max(...pids.map((pid) => readRssMb(pid) ?? NaN).filter(Number.isFinite));
  for (const n of nodes) log(`server ${n.nodeId ? `${n.nodeId} ` : ""}${n.url} (pid ${n.pid}, UI ${opts.ui}, ${opts.db}${CLUSTER ? `, cluster ${cluster.redisPrefix}` : ""}) up; RSS ${fmt(readRssMb(n.pid))} MB`);
  const idleRssMb = rssMb();
  // CPU of the servers, of PostgreSQL (when it is the database: its backends for this run's
  // database and its shared processes) and of Redis (cluster mode; shared with whatever else uses it).
  const nodeCpu = new CpuMeter(() => pids);
  const dbCpu = opts.db === "postgres" ? new CpuMeter(() => postgresPids(cluster.databaseName ?? undefined)) : undefined;
  const redisCpu = CLUSTER ? new CpuMeter(() => pidsNamed("redis-server")) : undefined;
  const cpuNow = () => ({ nodes: nodeCpu.read(), db: dbCpu?.read() ?? 0, redis: redisCpu?.read() ?? 0 });
  cpuNow();
  const sampler = new ProcessSampler(pids, urls, SHORT ? 250 : 500, dbCpu).start();
  const t0 = performance.now();
  // The server sheds calls while its loop is behind (the efficiency phase's 10,000 frames a
  // second can do that) and past a caller's rate: the bench's own calls come back, as a
  // patient client would.
  const api = apiClient({ url: server.url, apiKey: cluster.apiKey, retryShedMs: 60_000 });
  const fleet = new Fleet(urls);
  const phases: Phase[] = [];
  const phase = async <T>(name: string, body: () => Promise<T>): Promise<T> => {
    // Each phase starts on a quiet server: what the previous one left in the commit queue is written first.
    await Promise.all(urls.map(drained));
    const from = sampler.mark();
    const startS = (performance.now() - t0) / 1000;
    // At least one sample inside every phase, however short.
    const out = await body();
    await sleep(SHORT ? 260 : 510);
    phases.push({ name, startS: round(startS), endS: round((performance.now() - t0) / 1000), usage: sampler.usage(from) });
    return out;
  };

  // ---- work supply ----
  let submitted = 0;
  const jobIds: string[] = [];
  const submitMs: number[] = [];
  async function submit(units: number) {
    for (let left = units; left > 0; left -= JOB_MAX_UNITS) {
      const chunks = Math.min(JOB_MAX_UNITS, left);
      const at = performance.now();
      const job = await submitOne(chunks);
      submitMs.push(performance.now() - at);
      jobIds.push(job.id);
      submitted += chunks;
    }
  }
  let submitRetries = 0;
  /**
   * One job; a submission shed as TOO_MANY_REQUESTS (the server-wide admission limit, e.g. while
   * a commit backlog drains on a loaded machine) or SERVICE_UNAVAILABLE (the event loop behind)
   * is tried again for up to 60 s.
   */
  async function submitOne(chunks: number) {
    const deadline = performance.now() + 60_000;
    for (;;) {
      try {
        return await api.jobs.submit.mutate({ kernel: "pi", params: { samples: chunks * 1000 }, chunks, replication: { replicas: 1, adaptive: false } });
      } catch (e) {
        const code = e instanceof TRPCClientError ? (e.data as { code?: string } | undefined)?.code : undefined;
        if ((code !== "TOO_MANY_REQUESTS" && code !== "SERVICE_UNAVAILABLE") || performance.now() > deadline) throw e;
        submitRetries++;
        await sleep(250);
      }
    }
  }
  async function ensureQueued(n: number) {
    const queued = submitted - fleet.totalReceived;
    if (queued < n) await submit(Math.ceil(n - queued));
  }
  async function cancelAll() {
    const left = jobIds.splice(0);
    const states = await Promise.all(left.map((id) => api.jobs.cancel.mutate({ id }).then((j) => j.state, () => "unknown")));
    const running = left.filter((_, i) => states[i] === "running");
    if (running.length) log(`  ${running.length} job(s) still running after cancelling: ${running.join(", ")}`);
    submitted = fleet.totalReceived;
  }

  // ---- 1. dispatch throughput, trivial tasks ----
  const throughput: Array<{
    volunteers: number; threads: number; tasksPerSecond: number; acked: number; seconds: number; series: Array<[number, number]>; usage?: PhaseUsage;
    /** Server (every node's) plus database CPU per durable result; the database's and Redis's parts apart. */
    cpuMsPerTask: number; dbCpuMsPerTask: number | null; redisCpuMsPerTask: number | null;
    /** Durable results per node (cluster: volunteers are spread round-robin, node 1 first). */
    ackedByNode: number[];
  }> = [];
  let best = 0;
  // Every volunteer connects first (paused), before any work: what the connections alone cost.
  const fleetSize = Math.max(...plan.counts, ...plan.efficiency);
  const connectStart = performance.now();
  await fleet.connect(fleetSize, { threads: THREADS, paused: true });
  const connectSeconds = round((performance.now() - connectStart) / 1000, 2);
  await sleep(1000);
  const rssConnected = rssMb();
  // Read again once the same sockets idled a few seconds: what the connections hold, apart
  // from what the burst of handshakes left that V8 has not given back yet.
  await sleep(SETTLE_MS);
  const rssSettled = rssMb();
  log(`${fleetSize} volunteers connected in ${connectSeconds} s; server RSS ${fmt(rssConnected)} MB, ${fmt(rssSettled)} MB ${SETTLE_MS / 1000} s later`);
  for (const n of plan.counts) {
    await ensureQueued(Math.max(30_000, best * 1.5) * PHASE_S + n * THREADS * 4);
    const cpu0 = cpuNow();
    const r = await phase(`dispatch, ${n} volunteer${n > 1 ? "s" : ""}`, async () => {
      const { start, end, acked, seconds, tasksPerSecond } = await fleet.greedyPhase(n, THREADS, PHASE_S);
      return { volunteers: n, threads: THREADS, acked, ackedByNode: [...fleet.stats.ackedByNode], seconds, tasksPerSecond, series: rateSeries(fleet.stats.ackTimes, start, end) };
    });
    // CPU of the servers, and of PostgreSQL when it is the database, over the phase and what it committed after.
    const cpu1 = cpuNow();
    const perTask = (s: number) => (r.acked ? round((s * 1000) / r.acked, 4) : NaN);
    const dbMs = perTask(cpu1.db - cpu0.db);
    const cpuMsPerTask = perTask(cpu1.nodes - cpu0.nodes) + (dbCpu ? dbMs : 0);
    throughput.push({
      ...r, usage: phases.at(-1)!.usage, cpuMsPerTask: round(cpuMsPerTask, 4),
      dbCpuMsPerTask: dbCpu ? dbMs : null, redisCpuMsPerTask: redisCpu ? perTask(cpu1.redis - cpu0.redis) : null,
    });
    best = Math.max(best, r.tasksPerSecond);
    log(`dispatch ${n} volunteers × ${THREADS} threads: ${fmt(r.tasksPerSecond, 0)} tasks/s (${r.acked} durable results in ${r.seconds} s${NODES > 1 ? `; by node ${r.ackedByNode.join(" / ")}` : ""}); ${fmt(cpuMsPerTask, 3)} CPU ms per task`);
    if (fleet.stats.errors.length) log(`  volunteer errors: ${fleet.stats.errors.slice(0, 3).join("; ")}`);
  }

  // ---- 1b. the bare-transport ceiling: the same fleet and framing, no scheduler, no database ----
  const ceiling: Array<{ volunteers: number; tasksPerSecond: number; acked: number; seconds: number; cpuMsPerTask: number }> = [];
  {
    const bare = await startCeilingServer();
    const bareFleet = new Fleet(bare.url);
    const bareCpu = new CpuMeter(() => [bare.pid]);
    try {
      await bareFleet.connect(Math.max(...plan.counts), { threads: THREADS, paused: true });
      for (const n of plan.counts) {
        const cpu0 = bareCpu.read();
        const { acked, seconds, tasksPerSecond } = await bareFleet.greedyPhase(n, THREADS, PHASE_S);
        const r = { volunteers: n, acked, seconds, tasksPerSecond, cpuMsPerTask: acked ? round(((bareCpu.read() - cpu0) * 1000) / acked, 4) : NaN };
        ceiling.push(r);
        log(`ceiling (bare transport) ${n} volunteers × ${THREADS} threads: ${fmt(r.tasksPerSecond, 0)} tasks/s; ${fmt(r.cpuMsPerTask, 4)} CPU ms per task`);
        await sleep(200);
      }
    } finally {
      await bareFleet.close();
      await bare.stop();
    }
  }

  // ---- 2. overhead, open model: at fractions of the peak, and at a fixed 1,000 tasks/s ----
  type Overhead = OverheadRow & { histogram: ReturnType<typeof histogram>; series: Array<[number, number]> };
  async function overheadPhase(name: string, load: number | null, rate: number, active: number, threads: number): Promise<Overhead> {
    await ensureQueued(rate * (PHASE_S + 2) + active * threads * 4);
    const scrape = () => Promise.all(urls.map((u) => fetchMetrics(u).catch(() => "")));
    return phase(name, async () => {
      // Where the time goes: the server's part (results frame handled → ack sent: the group
      // commit's wait and the commit), the commits themselves, and this process's own loop delay.
      const before = await scrape();
      const myLag = monitorEventLoopDelay({ resolution: 1 });
      myLag.enable();
      const periodMs = (active / rate) * 1000;
      fleet.run({ kind: "paced", periodMs }, { active, threads });
      const start = performance.now();
      await sleep(PHASE_S * 1000);
      const end = performance.now();
      fleet.stopPacing();
      // Give what was started its acknowledgement; what never got one counts until now.
      const wait = performance.now() + 2000;
      while (performance.now() < wait && fleet.volunteers.some((v) => v.started.size)) await sleep(5);
      const late = performance.now();
      // Steady state: tasks scheduled after the warm-up, when the phase switch (every window
      // refilled at once, the previous run's leftovers answered) has settled. Tasks never
      // acknowledged count until now, so a stall cannot hide (no coordinated omission).
      const steady = start + WARMUP_MS;
      const samples: number[] = [];
      const warm: number[] = [];
      fleet.stats.overheadsMs.forEach((ms, i) => (fleet.stats.overheadSlots[i] >= steady ? samples : warm).push(ms));
      for (const v of fleet.volunteers) {
        for (const at of v.started.values()) (at >= steady ? samples : warm).push(late - at);
        for (const w of v.waiting) (w.at >= steady ? samples : warm).push(late - w.at);
      }
      fleet.pause();
      myLag.disable();
      const after = await scrape();
      // The worst node's figures (one node but in a cluster).
      const worst = (metric: string) => {
        const per = urls.map((_, i) => histogramBetween(before[i]!, after[i]!, metric, [0.5, 0.99]));
        return { p50: Math.max(...per.map((h) => h.quantilesMs[0]!)), p99: Math.max(...per.map((h) => h.quantilesMs[1]!)), count: per.reduce((s2, h) => s2 + h.count, 0) };
      };
      const acked = fleet.ackedUntil(end);
      return {
        breakdown: { ack: worst("tabgrid_result_ack_seconds"), commit: worst("tabgrid_commit_duration_seconds"), loadGeneratorLagP99Ms: round(myLag.percentile(99) / 1e6, 2) },
        load, volunteers: active, threads, targetPerSecond: Math.round(rate), achievedPerSecond: Math.round(acked / ((end - start) / 1000)),
        summary: summarize(samples), warmup: summarize(warm), histogram: histogram(samples),
        series: overheadSeries(fleet.stats.overheadSlots, fleet.stats.overheadsMs, start),
      };
    });
  }
  const overhead: Overhead[] = [];
  const active = Math.min(OVERHEAD_VOLUNTEERS, fleet.volunteers.length);
  for (const load of plan.loads) {
    const r = await overheadPhase(`overhead at ${Math.round(load * 100)}% of peak`, load, best * load, active, THREADS);
    r.usage = phases.at(-1)!.usage;
    overhead.push(r);
    log(`overhead at ${Math.round(load * 100)}% of peak (${fmt(r.targetPerSecond, 0)} tasks/s over ${active} volunteers): p50 ${fmt(r.summary.p50, 2)} ms, p95 ${fmt(r.summary.p95, 2)}, p99 ${fmt(r.summary.p99, 2)}, max ${fmt(r.summary.max, 2)} (${r.summary.count} tasks)`);
  }
  // Every volunteer of the fleet (1,000 in the full run) at one task a second each, one thread:
  // results travel one to a frame, as a browser fleet doing real work sends them.
  const fixed = await overheadPhase(`overhead at ${FIXED_RATE} tasks/s, ${fleet.volunteers.length} volunteers`, null, FIXED_RATE, fleet.volunteers.length, 1);
  fixed.usage = phases.at(-1)!.usage;
  log(`overhead at ${FIXED_RATE} tasks/s over ${fixed.volunteers} volunteers × 1 thread: p50 ${fmt(fixed.summary.p50, 2)} ms, p95 ${fmt(fixed.summary.p95, 2)}, p99 ${fmt(fixed.summary.p99, 2)}, max ${fmt(fixed.summary.max, 2)} (${fixed.summary.count} tasks, ${fmt(fixed.achievedPerSecond, 0)}/s achieved)`);
  await cancelAll();
  await sleep(300);

  // ---- 3. parallel efficiency, 100 ms tasks ----
  const efficiency: EfficiencyRow[] = [];
  for (const n of plan.efficiency) {
    const tasks = n * plan.tasksPerThread;
    const before = jobIds.length;
    await submit(tasks);
    const mine = jobIds.slice(before);
    const r = await phase(`efficiency, ${n} volunteers, ${TASK_MS} ms tasks`, async () => {
      fleet.run({ kind: "timed", ms: TASK_MS }, { active: n, threads: 1 });
      const start = performance.now();
      const deadline = start + (plan.tasksPerThread * TASK_MS) * 5 + 30_000;
      // Acks include the ringers (known-answer tasks) newcomers get among their real ones.
      while (fleet.stats.acked < tasks && performance.now() < deadline) await sleep(5);
      const last = fleet.stats.ackTimes.at(-1)?.[0] ?? performance.now();
      const makespan = (last - start) / 1000;
      // The consumer's view: until every job reads as completed.
      let jobSeconds: number | null = null;
      for (;;) {
        const states = await Promise.all(mine.map((id) => api.jobs.get.query({ id }).then((j) => j.state)));
        if (states.every((s) => s === "completed")) {
          jobSeconds = round((performance.now() - start) / 1000, 3);
          break;
        }
        if (performance.now() > deadline) break;
        // Within the server's per-caller rate (LOAD_SHED_CALLER_RATE), as a polite client polls.
        await sleep(100);
      }
      fleet.pause();
      const ideal = (plan.tasksPerThread * TASK_MS) / 1000;
      // Where the makespan goes: threads waiting for a task, and an uneven share of the tasks.
      const gaps = fleet.stats.gapsMs;
      const ran = fleet.tasksRun(n);
      return {
        volunteers: n, tasks: fleet.stats.acked, idealSeconds: ideal, makespanSeconds: round(makespan, 3), efficiency: round(fleet.stats.acked >= tasks ? ideal / makespan : 0, 4), jobSeconds,
        gapMsPerVolunteer: round(gaps.reduce((a, b) => a + b, 0) / n, 1), gapP99Ms: round(summarize(gaps).p99, 1), tasksPerVolunteer: [Math.min(...ran), Math.max(...ran)] as [number, number],
      };
    });
    jobIds.splice(before);
    efficiency.push({ ...r, usage: phases.at(-1)!.usage });
    log(`efficiency ${n} volunteers × ${plan.tasksPerThread} tasks of ${TASK_MS} ms: ${fmt(r.efficiency * 100, 1)}% (makespan ${r.makespanSeconds} s, ideal ${r.idealSeconds} s; jobs completed after ${r.jobSeconds ?? "–"} s; waiting for tasks ${fmt(r.gapMsPerVolunteer, 0)} ms a volunteer, gap p99 ${fmt(r.gapP99Ms, 0)} ms; ${r.tasksPerVolunteer.join("–")} tasks a volunteer)`);
  }

  // ---- 4. interactive calc round trip, open model ----
  // 150 calls in the full run: a p99 of fewer than 100 is the slowest call alone. The caller is
  // a process of its own (calcCaller.ts), as a consumer's machine would be.
  // Asked of node 1, which answers with its own volunteers: the first of the fleet is on it.
  const calc = await phase("interactive calc", async () => {
    fleet.run({ kind: "greedy" }, { active: Math.min(100, fleet.volunteers.length), threads: THREADS });
    const r = await callCalcFromOwnProcess({ url: server.url, apiKey: cluster.apiKey, perSecond: plan.calcPerSecond, n: plan.calcPerSecond * PHASE_S });
    fleet.pause();
    return r;
  });
  log(`interactive calc at ${calc.perSecond}/s: p50 ${fmt(calc.summary.p50, 2)} ms, p99 ${fmt(calc.summary.p99, 2)} ms, max ${fmt(calc.summary.max, 2)} ms (${calc.failed} failed)`);

  // ---- 5. job submissions as a consumer makes them: 16 chunks, open model ----
  const small = await phase("job submissions, 16 chunks", async () => {
    fleet.run({ kind: "greedy" }, { active: Math.min(100, fleet.volunteers.length), threads: THREADS });
    const r = await openModel(SMALL_JOBS_PER_SECOND, SMALL_JOBS_PER_SECOND * PHASE_S,
      () => api.jobs.submit.mutate({ kernel: "pi", params: { samples: 16_000 }, chunks: 16, replication: { replicas: 1, adaptive: false } }));
    fleet.pause();
    return r;
  });
  log(`job submissions of 16 chunks at ${small.perSecond}/s: p50 ${fmt(small.summary.p50, 2)} ms, p99 ${fmt(small.summary.p99, 2)} ms (${small.failed} failed)`);

  const volunteerErrors = fleet.stats.errors.length;
  await fleet.close();

  // ---- 6. training: an iterative program's rounds on CLI volunteers, against one process ----
  const online = async () => (await api.cluster.status.query()).volunteers;
  for (let i = 0; i < 100 && (await online()) > 0; i++) await sleep(100);
  const training = await phase(`training, ${TRAINING.volunteers} CLI volunteers`, () => trainingPhase(server.url, cluster.apiKey, api, TRAINING, online));
  for (const [which, t] of [["their first job", training], ["their next job", training.next]] as const) {
    log(`training ${TRAINING.rows} rows × ${TRAINING.features} features in ${TRAINING.shards} shards on ${TRAINING.volunteers} CLI volunteers, ${which}: round p50 ${fmt(t.rounds_ms.p50, 1)} ms, p99 ${fmt(t.rounds_ms.p99, 1)} ms (first ${t.firstRoundMs} ms); ${t.rounds} rounds in ${t.wallMs} ms, one process ${t.referenceMs} ms (goal ≤ ${t.budgetMs} ms); loss ${fmt(t.loss, 4)} (one process ${fmt(t.referenceLoss, 4)})`);
  }

  sampler.stop();
  const alive = nodes.every((n) => n.alive());
  stopOnFailure = undefined;
  await cluster.stop();

  // ---- results ----
  const peak = throughput.reduce((a, b) => (b.tasksPerSecond > a.tasksPerSecond ? b : a));
  const half = overhead.find((o) => o.load === 0.5) ?? overhead[0];
  const ceilingPeak = ceiling.reduce((a, b) => (b.tasksPerSecond > a.tasksPerSecond ? b : a));
  const eff1000 = efficiency.find((e) => e.volunteers === 1000);
  const max = Math.max(...plan.counts, ...plan.efficiency);
  const rss1000 = max >= 1000 ? Math.max(rssConnected, ...phases.filter((p) => /1000 volunteers/.test(p.name)).map((p) => p.usage.rssMbMax)) : null;
  const summary = {
    db: opts.db,
    nodes: NODES,
    /** Cluster mode: Redis, slices (always with several nodes). */
    cluster: CLUSTER,
    /** Server CPU, every node's (plus PostgreSQL's), per durable result in the peak dispatch phase. */
    cpu_ms_per_task: peak.cpuMsPerTask,
    /** Durable results per CPU-second of the servers and the database in that phase: throughput per core. */
    dispatch_tasks_per_cpu_s: peak.cpuMsPerTask > 0 ? Math.round(1000 / peak.cpuMsPerTask) : null,
    /** PostgreSQL's part of cpu_ms_per_task (null with SQLite, which runs inside the server). */
    db_cpu_ms_per_task: peak.dbCpuMsPerTask,
    /** Redis's CPU per task in that phase, not in cpu_ms_per_task (cluster mode; null otherwise). */
    redis_cpu_ms_per_task: peak.redisCpuMsPerTask,
    dispatch_tasks_per_s: peak.tasksPerSecond,
    /** The bare-transport ceiling: the same fleet and framing against a server with no scheduler and no database, at its best volunteer count. */
    ceiling_tasks_per_s: ceilingPeak.tasksPerSecond,
    /** dispatch_tasks_per_s as a share of ceiling_tasks_per_s, measured in the same run. */
    dispatch_share_of_ceiling: round(peak.tasksPerSecond / ceilingPeak.tasksPerSecond, 3),
    /** The peak phase's durable results per node. */
    dispatch_acked_by_node: peak.ackedByNode,
    dispatch_peak_volunteers: peak.volunteers,
    overhead_p50_ms: round(half.summary.p50, 3),
    overhead_p99_ms: round(half.summary.p99, 3),
    overhead_max_ms: round(half.summary.max, 3),
    /** Overhead at a fixed 1,000 tasks/s over the whole fleet (1,000 volunteers in the full run), one result a frame. */
    overhead_p50_ms_1000_per_s: round(fixed.summary.p50, 3),
    overhead_p99_ms_1000_per_s: round(fixed.summary.p99, 3),
    overhead_1000_per_s_volunteers: fixed.volunteers,
    /** The server's part of those: a results frame's time from being handled to its ack (commit wait and commit), p99. */
    server_ack_p99_ms: round(half.breakdown.ack.p99, 3),
    server_ack_p99_ms_1000_per_s: round(fixed.breakdown.ack.p99, 3),
    efficiency_1000_volunteers: eff1000?.efficiency ?? null,
    efficiency_by_volunteers: Object.fromEntries(efficiency.map((e) => [e.volunteers, e.efficiency])),
    server_rss_mb_1000_volunteers: rss1000 === null ? null : round(rss1000, 1),
    server_rss_mb_idle: round(idleRssMb, 1),
    /** With every volunteer of the run connected (1,000 in the full run) and no work yet. */
    server_rss_mb_connected: round(rssConnected, 1),
    server_rss_mb_connected_settled: round(rssSettled, 1),
    volunteers_connected: fleetSize,
    server_rss_mb_max: round(Math.max(...phases.map((p) => p.usage.rssMbMax)), 1),
    calc_p50_ms: round(calc.summary.p50, 2),
    calc_p99_ms: round(calc.summary.p99, 2),
    /** A consumer's job of 16 chunks, submitted at SMALL_JOBS_PER_SECOND while volunteers compute. */
    job_submit_p50_ms: round(small.summary.p50, 1),
    job_submit_p99_ms: round(small.summary.p99, 1),
    /** The bench's own feed: jobs of up to 10,000 chunks, submitted between phases. */
    bulk_submit_p50_ms: round(summarize(submitMs).p50, 1),
    /** An iterative program's round on CLI volunteers (the training phase, their first job), after the first round. */
    round_p50_ms: training.rounds_ms.p50,
    round_p99_ms: training.rounds_ms.p99,
    /** The training job from submission to its last round, and the same rounds in one process. */
    training_wall_ms: training.wallMs,
    training_reference_ms: training.referenceMs,
    training_budget_ms: training.budgetMs,
    training_first_round_ms: training.firstRoundMs,
    /** The same volunteers' next training job (other data of the same size). */
    round_p50_ms_next_job: training.next.rounds_ms.p50,
    round_p99_ms_next_job: training.next.rounds_ms.p99,
    training_wall_ms_next_job: training.next.wallMs,
    training_budget_ms_next_job: training.next.budgetMs,
    training_first_round_ms_next_job: training.next.firstRoundMs,
    server_alive: alive,
    volunteer_errors: volunteerErrors,
  };
  const rssMax = summary.server_rss_mb_max;
  const full1000 = max >= 1000;
  const targets = [
    { target: "dispatch throughput, trivial tasks, durable", goal: "≥ 40,000 tasks/s", value: `${fmt(summary.dispatch_tasks_per_s, 0)} tasks/s`, met: summary.dispatch_tasks_per_s >= 40_000 },
    { target: "the same, as a share of the bare-transport ceiling", goal: "≥ 30%", value: `${fmt(summary.dispatch_share_of_ceiling * 100, 1)}% of ${fmt(summary.ceiling_tasks_per_s, 0)} tasks/s`, met: summary.dispatch_share_of_ceiling >= 0.3 },
    { target: `overhead p99 at ${FIXED_RATE} tasks/s (${fixed.volunteers} volunteers, one result a frame)`, goal: "≤ 5 ms", value: `${fmt(summary.overhead_p99_ms_1000_per_s, 2)} ms`, met: full1000 ? summary.overhead_p99_ms_1000_per_s <= 5 : null },
    { target: "overhead p99 at half of peak", goal: "≤ 20 ms", value: `${fmt(summary.overhead_p99_ms, 2)} ms`, met: summary.overhead_p99_ms <= 20 },
    { target: "efficiency, 1,000 volunteers, 100 ms tasks", goal: "≥ 95%", value: eff1000 ? `${fmt(eff1000.efficiency * 100, 1)}%` : "not run", met: eff1000 ? eff1000.efficiency >= 0.95 : null },
    { target: "server RSS, 1,000 volunteers connected, before any work", goal: "< 200 MB", value: full1000 ? `${fmt(rssConnected, 0)} MB (${fmt(rssSettled, 0)} MB ${SETTLE_MS / 1000} s later)` : "not run", met: full1000 ? rssConnected < 200 : null },
    { target: "server RSS, most while working", goal: "< 400 MB", value: `${fmt(rssMax, 0)} MB`, met: full1000 ? rssMax < 400 : null },
    { target: "calc round trip p99", goal: "≤ 10 ms", value: `${fmt(summary.calc_p99_ms, 2)} ms`, met: summary.calc_p99_ms <= 10 },
    { target: "job submission p50 (16 chunks)", goal: "≤ 15 ms", value: `${fmt(summary.job_submit_p50_ms, 1)} ms`, met: summary.job_submit_p50_ms <= 15 },
    { target: `training round p50 / p99 (${TRAINING.shards} shards of ${TRAINING.rows} × ${TRAINING.features}, ${TRAINING.volunteers} CLI volunteers)`, goal: "≤ 30 / 60 ms", value: `${fmt(summary.round_p50_ms, 1)} / ${fmt(summary.round_p99_ms, 1)} ms`, met: SHORT ? null : summary.round_p50_ms <= 30 && summary.round_p99_ms <= 60 },
    { target: `training to the reference loss (${TRAINING.rounds} rounds)`, goal: `≤ 1.2 × one process + 10 ms a round = ${fmt(summary.training_budget_ms, 0)} ms`, value: `${fmt(summary.training_wall_ms, 0)} ms`, met: SHORT ? null : summary.training_wall_ms <= summary.training_budget_ms },
    { target: "the same volunteers' next training job (other data): round p50 / p99", goal: "≤ 30 / 60 ms", value: `${fmt(summary.round_p50_ms_next_job, 1)} / ${fmt(summary.round_p99_ms_next_job, 1)} ms`, met: SHORT ? null : summary.round_p50_ms_next_job <= 30 && summary.round_p99_ms_next_job <= 60 },
    { target: "the same volunteers' next training job: to the reference loss", goal: `≤ ${fmt(summary.training_budget_ms_next_job, 0)} ms`, value: `${fmt(summary.training_wall_ms_next_job, 0)} ms`, met: SHORT ? null : summary.training_wall_ms_next_job <= summary.training_budget_ms_next_job },
  ];
  const meta = reportMeta("bench", SHORT ? "short" : "full", started, `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`);
  const timeline = sampler.samples.map((s) => ({ t: round(s.t, 2), cpuPercent: round(s.cpuPercent, 1), dbCpuPercent: round(s.dbCpuPercent, 1), rssMb: round(s.rssMb, 1), lagP99Ms: round(s.lagP99Ms, 2), lagMaxMs: round(s.lagMaxMs, 2) }));
  const report = { summary, targets, throughput, ceiling, overhead, fixedRate: fixed, efficiency, calc, smallJobs: small, training, phases, timeline, submitMs: summarize(submitMs), submitRetries, connectSeconds, ui: opts.ui };
  const md = markdown(meta, report);
  const files = writeReport(meta, report, md);
  if (opts.json) process.stdout.write(JSON.stringify({ ...summary, report: files.json }) + "\n");
  else log(`\n${md}\nreport: ${files.md}`);
}

/** Waits (at most 30 s) until the server's commit queue is empty. */
async function drained(url: string) {
  const deadline = performance.now() + 30_000;
  while (performance.now() < deadline) {
    const text = await fetchMetrics(url).catch(() => "");
    if (metricValue(text, "tabgrid_commit_queue_operations", NaN) === 0) return;
    await sleep(100);
  }
}

/** p99 overhead per 250 ms of scheduled time, as [seconds since the phase began, ms]. */
function overheadSeries(slots: number[], overheads: number[], start: number): Array<[number, number]> {
  const buckets = new Map<number, number[]>();
  slots.forEach((at, i) => {
    const b = Math.floor((at - start) / 250);
    if (b >= 0) (buckets.get(b) ?? buckets.set(b, []).get(b)!).push(overheads[i]);
  });
  return [...buckets].sort((a, b) => a[0] - b[0]).map(([b, xs]) => [b / 4, round(summarize(xs).p99, 2)]);
}

interface OverheadRow {
  load: number | null; volunteers: number; threads: number; targetPerSecond: number; achievedPerSecond: number; summary: Summary; warmup: Summary;
  /** From the server's histograms over the phase (ms), and the load generator's own event-loop delay. */
  breakdown: { ack: { p50: number; p99: number; count: number }; commit: { p50: number; p99: number; count: number }; loadGeneratorLagP99Ms: number };
  usage?: PhaseUsage;
}

function markdown(meta: ReturnType<typeof reportMeta>, r: {
  summary: Record<string, unknown>; targets: Array<{ target: string; goal: string; value: string; met: boolean | null }>;
  throughput: Array<{ volunteers: number; threads: number; tasksPerSecond: number; usage?: PhaseUsage; cpuMsPerTask: number; dbCpuMsPerTask: number | null; redisCpuMsPerTask: number | null; ackedByNode: number[] }>;
  ceiling: Array<{ volunteers: number; tasksPerSecond: number; cpuMsPerTask: number }>;
  overhead: OverheadRow[];
  fixedRate: OverheadRow;
  efficiency: EfficiencyRow[];
  calc: { perSecond: number; requests: number; failed: number; summary: Summary };
  smallJobs: { perSecond: number; requests: number; failed: number; summary: Summary };
  phases: Phase[];
}): string {
  const u = (x?: PhaseUsage) => (x ? [fmt(x.cpuPercentMean, 0), fmt(x.rssMbMax, 0), fmt(x.lagP99MsMax, 1)] : ["–", "–", "–"]);
  return [
    `# Benchmark (${meta.mode}) — ${meta.startedAt}`,
    "",
    `Commit ${meta.commit ?? "unknown"} · ${meta.machine.cpus} cores (${meta.machine.cpuModel}) · Node ${meta.machine.node} · ${meta.durationSeconds} s · \`${meta.command}\``,
    "",
    `Database ${opts.db}; ${NODES} server process${NODES > 1 ? "es" : ""}${CLUSTER ? " in cluster mode (PostgreSQL and Redis; volunteers spread round-robin, jobs and calc through node 1)" : ""}.` +
      (NODES > 1 ? " Server CPU is every node's, summed; RSS and loop lag the largest of any node." : ""),
    "",
    "## Targets",
    table(["target", "goal", "measured", "met"], r.targets.map((t) => [t.target, t.goal, t.value, t.met === null ? "–" : t.met ? "yes" : "no"])),
    "",
    "## Dispatch throughput (trivial tasks, every result durably committed before its ack)",
    table(
      ["volunteers", "threads each", "tasks/s", "CPU ms per task (servers + database)", "database CPU ms per task", "server CPU %", "RSS MB", "loop lag p99 ms", ...(NODES > 1 ? ["results by node"] : [])],
      r.throughput.map((t) => [
        t.volunteers, t.threads, fmt(t.tasksPerSecond, 0), fmt(t.cpuMsPerTask, 3), t.dbCpuMsPerTask === null ? "–" : fmt(t.dbCpuMsPerTask, 3), ...u(t.usage),
        ...(NODES > 1 ? [t.ackedByNode.join(" / ")] : []),
      ]),
    ),
    "",
    "## Bare-transport ceiling (the same fleet and framing; a server with no scheduler and no database)",
    table(["volunteers", "tasks/s", "its server's CPU ms per task"], r.ceiling.map((c) => [c.volunteers, fmt(c.tasksPerSecond, 0), fmt(c.cpuMsPerTask, 4)])),
    "",
    `## Dispatch-to-result overhead (open model, from each task's scheduled start to its durable ack; the first ${WARMUP_MS} ms of each phase is warm-up, reported apart)`,
    table(["load", "volunteers × threads", "target tasks/s", "achieved", "p50 ms", "p95 ms", "p99 ms", "max ms", "tasks", "warm-up p99 ms"], [...r.overhead, r.fixedRate].map((o) => [
      o.load === null ? "fixed" : `${Math.round(o.load * 100)}% of peak`, `${o.volunteers} × ${o.threads}`,
      fmt(o.targetPerSecond, 0), fmt(o.achievedPerSecond, 0), fmt(o.summary.p50, 2), fmt(o.summary.p95, 2), fmt(o.summary.p99, 2), fmt(o.summary.max, 2), o.summary.count, fmt(o.warmup.p99, 1),
    ])),
    "",
    "## Where the overhead goes (per overhead phase)",
    "The server's part is a results frame's stay from being handled to its ack being sent: waiting for the group commit, and the commit. The rest of a task's overhead is spent before the server handles the frame (its own event-loop delay, the load generator's, the sockets) or waiting for a task to be there when its slot comes.",
    table(["phase", "overhead p50 ms", "overhead p99 ms", "server handled → ack p50 ms", "p99 ms", "commit p50 ms", "commit p99 ms", "commits", "server loop lag p99 ms (max)", "load generator loop lag p99 ms"], [...r.overhead, r.fixedRate].map((o) => [
      o.load === null ? `${fmt(o.targetPerSecond, 0)}/s fixed` : `${Math.round(o.load * 100)}% of peak`, fmt(o.summary.p50, 2), fmt(o.summary.p99, 2),
      fmt(o.breakdown.ack.p50, 2), fmt(o.breakdown.ack.p99, 2), fmt(o.breakdown.commit.p50, 2), fmt(o.breakdown.commit.p99, 2), o.breakdown.commit.count,
      o.usage ? fmt(o.usage.lagP99MsMax, 1) : "–", fmt(o.breakdown.loadGeneratorLagP99Ms, 1),
    ])),
    "",
    "## Parallel efficiency (100 ms tasks, one thread per volunteer)",
    table(
      ["volunteers", "tasks", "ideal s", "makespan s", "efficiency", "jobs completed after s", "waiting ms a volunteer", "gap p99 ms", "tasks a volunteer", "server CPU %", "RSS MB", "loop lag p99 ms"],
      r.efficiency.map((e) => [e.volunteers, e.tasks, e.idealSeconds, e.makespanSeconds, `${fmt(e.efficiency * 100, 1)}%`, e.jobSeconds ?? "–", fmt(e.gapMsPerVolunteer, 0), fmt(e.gapP99Ms, 0), e.tasksPerVolunteer.join("–"), ...u(e.usage)]),
    ),
    "",
    "## Interactive calc round trip (open model)",
    `${r.calc.requests} requests at ${r.calc.perSecond}/s: p50 ${fmt(r.calc.summary.p50, 2)} ms, p95 ${fmt(r.calc.summary.p95, 2)} ms, p99 ${fmt(r.calc.summary.p99, 2)} ms, max ${fmt(r.calc.summary.max, 2)} ms, ${r.calc.failed} failed.`,
    "",
    "## Job submissions (16 chunks, open model, while volunteers compute)",
    `${r.smallJobs.requests} submissions at ${r.smallJobs.perSecond}/s: p50 ${fmt(r.smallJobs.summary.p50, 2)} ms, p95 ${fmt(r.smallJobs.summary.p95, 2)} ms, p99 ${fmt(r.smallJobs.summary.p99, 2)} ms, max ${fmt(r.smallJobs.summary.max, 2)} ms, ${r.smallJobs.failed} failed.`,
    "",
    "## Server per phase",
    table(["phase", "from s", "to s", "CPU % mean", "CPU % max", "database CPU % mean", "RSS MB max", "loop lag p99 ms (max)", "loop lag max ms", "load generator CPU %"], r.phases.map((p) => [p.name, p.startS, p.endS, fmt(p.usage.cpuPercentMean, 0), fmt(p.usage.cpuPercentMax, 0), fmt(p.usage.dbCpuPercentMean, 0), fmt(p.usage.rssMbMax, 0), fmt(p.usage.lagP99MsMax, 1), fmt(p.usage.lagMaxMs, 1), fmt(p.usage.clientCpuPercentMean, 0)])),
    "",
  ].join("\n");
}

let stopOnFailure: (() => Promise<void>) | undefined;

main().then(
  () => process.exit(0),
  async (e: Error) => {
    console.error(`bench failed: ${e.stack ?? e.message}`);
    await stopOnFailure?.().catch(() => undefined);
    process.exit(1);
  },
);
