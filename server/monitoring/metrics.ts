import fs from "node:fs/promises";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { SHED_REASONS, type CoordinatorObserver, type ShedReason } from "./observer";
import type { ClusterSource } from "./sampler";
import type { Sample } from "./series";
import { version } from "./version";

/** What the gauges read when Prometheus scrapes. */
export interface MetricsSource {
  cluster: ClusterSource;
  /** The sampler's latest sample, for what is measured over an interval (event-loop delay). */
  latest(): Sample | undefined;
  /** DATA_DIR, whose file system's free space is read at each scrape. */
  dataDir: string;
}

const RESULT_OUTCOMES = ["received", "valid", "invalid", "error"] as const;
const JOB_STATES = ["completed", "failed", "cancelled"] as const;

/**
 * Tabgrid's Prometheus metrics in a registry of their own (tests run several servers in one
 * process, and the global registry would mix them), with Node's default process_* and
 * nodejs_* metrics. Labels only take a handful of fixed values: never a user, volunteer or job.
 * Counters are fed by the coordinator through the observer methods; gauges are read from
 * the coordinator at scrape time.
 */
export class PromMetrics implements CoordinatorObserver {
  readonly registry = new Registry();
  private source: MetricsSource | undefined;

  private readonly dispatchedTotal: Counter;
  private readonly results: Record<(typeof RESULT_OUTCOMES)[number], Counter.Internal>;
  private readonly validatedTotal: Counter;
  private readonly spotChecksTotal: Counter;
  private readonly caughtTotal: Counter;
  private readonly jobsFinished: Record<(typeof JOB_STATES)[number], Counter.Internal>;
  private readonly turnaround: Histogram;
  private readonly commitDuration: Histogram;
  private readonly ackDelay: Histogram;
  private readonly commitOpsTotal: Counter;
  private readonly commitFailuresTotal: Counter;
  private readonly commitDroppedTotal: Counter;
  private readonly rejectedTotal: Counter;
  private readonly shedTotal: Counter<"reason">;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });

    const source = () => this.source;
    const cluster = (read: (s: ReturnType<MetricsSource["cluster"]["status"]>) => number | undefined) =>
      function (this: Gauge) {
        const s = source()?.cluster.status();
        const v = s ? read(s) : undefined;
        if (v !== undefined) this.set(v);
      };
    const fromSample = (read: (s: Sample) => number) =>
      function (this: Gauge) {
        const s = source()?.latest();
        if (s) this.set(read(s));
      };

    new Gauge({ name: "tabgrid_build_info", help: "Always 1; the version label says which Tabgrid is running.", labelNames: ["version"], registers })
      .set({ version }, 1);
    new Gauge({ name: "tabgrid_volunteers", help: "Volunteers online (distinct hosts).", registers, collect: cluster((s) => s.volunteers) });
    new Gauge({ name: "tabgrid_volunteer_connections", help: "Volunteer sockets open (a host may open several).", registers, collect: cluster((s) => s.connections) });
    new Gauge({ name: "tabgrid_worker_threads", help: "Worker threads offered by the volunteers online.", registers, collect: cluster((s) => s.threads) });
    new Gauge({ name: "tabgrid_jobs_running", help: "Jobs running.", registers, collect: cluster((s) => s.jobsRunning) });
    new Gauge({ name: "tabgrid_tasks_queued", help: "Task instances waiting for a volunteer, all jobs.", registers, collect: cluster((s) => s.tasksQueued) });
    new Gauge({ name: "tabgrid_tasks_running", help: "Task instances leased to volunteers.", registers, collect: cluster((s) => s.tasksRunning) });
    new Gauge({ name: "tabgrid_commit_queue_operations", help: "Operations waiting for the next database commit.", registers, collect: cluster((s) => s.pendingCommits) });
    const disk = (read: (s: { bavail: number; blocks: number; bsize: number }) => number) =>
      async function (this: Gauge) {
        const dir = source()?.dataDir;
        // A failing statfs must not fail the whole scrape; the last value stays.
        if (dir) await fs.statfs(dir).then((s) => this.set(read(s)), () => undefined);
      };
    new Gauge({
      name: "tabgrid_data_disk_free_bytes", help: "Space available to the server where the data directory lives.",
      registers, collect: disk((s) => s.bavail * s.bsize),
    });
    new Gauge({
      name: "tabgrid_data_disk_size_bytes", help: "Size of the file system where the data directory lives.",
      registers, collect: disk((s) => s.blocks * s.bsize),
    });
    new Gauge({
      name: "tabgrid_event_loop_lag_seconds", help: "Event-loop delay over the last sample interval, 99th percentile.",
      registers, collect: fromSample((s) => s.values.event_loop_lag_ms / 1000),
    });

    this.dispatchedTotal = new Counter({ name: "tabgrid_tasks_dispatched_total", help: "Task instances sent to volunteers.", registers });
    const results = new Counter({
      name: "tabgrid_results_total",
      help: "Task results by outcome: received (an output came back), valid or invalid (verdict at quorum), error (kernel error or malformed output).",
      labelNames: ["outcome"], registers,
    });
    // Every label value exported from the start (as 0), so rate() and absent() work before the first event.
    for (const outcome of RESULT_OUTCOMES) results.inc({ outcome }, 0);
    this.results = Object.fromEntries(RESULT_OUTCOMES.map((o) => [o, results.labels({ outcome: o })])) as PromMetrics["results"];
    this.validatedTotal = new Counter({ name: "tabgrid_units_validated_total", help: "Work units that reached their quorum.", registers });
    this.spotChecksTotal = new Counter({ name: "tabgrid_spot_checks_total", help: "Units the server recomputed to check volunteers' results.", registers });
    this.caughtTotal = new Counter({ name: "tabgrid_results_caught_total", help: "Results a spot-check proved wrong (their hosts were banned).", registers });
    const jobs = new Counter({ name: "tabgrid_jobs_finished_total", help: "Jobs that ended, by final state.", labelNames: ["state"], registers });
    for (const state of JOB_STATES) jobs.inc({ state }, 0);
    this.jobsFinished = Object.fromEntries(JOB_STATES.map((s) => [s, jobs.labels({ state: s })])) as PromMetrics["jobsFinished"];
    this.turnaround = new Histogram({
      name: "tabgrid_task_turnaround_seconds", help: "Time from lease to result.",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600], registers,
    });
    this.commitDuration = new Histogram({
      name: "tabgrid_commit_duration_seconds", help: "Duration of one group commit to the database.",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers,
    });
    this.ackDelay = new Histogram({
      name: "tabgrid_result_ack_seconds",
      help: "Time from handling a volunteer's results frame to sending its ack: the wait for the group commit and the commit.",
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5], registers,
    });
    this.commitOpsTotal = new Counter({ name: "tabgrid_commit_operations_total", help: "Operations (results, verdicts, payouts…) committed.", registers });
    this.commitFailuresTotal = new Counter({ name: "tabgrid_commit_failures_total", help: "Group commits that failed (and were retried).", registers });
    this.commitDroppedTotal = new Counter({
      name: "tabgrid_commit_dropped_total", help: "Operations dropped from the group commit because they failed alone on their data, by type.",
      labelNames: ["op"], registers,
    });
    this.shedTotal = new Counter({ name: "tabgrid_load_shed_total", help: "Work turned away or put off under overload, by reason.", labelNames: ["reason"], registers });
    for (const reason of SHED_REASONS) this.shedTotal.inc({ reason }, 0);
    this.rejectedTotal = new Counter({ name: "tabgrid_volunteer_messages_rejected_total", help: "Frames from volunteers refused (bad JSON, wrong shape, out of order).", registers });
  }

  /** Where the gauges read from; until this is called they report nothing but 0. */
  collectFrom(source: MetricsSource) {
    this.source = source;
  }

  // ---- CoordinatorObserver: increments only --------------------------------------------

  dispatched(tasks: number) {
    this.dispatchedTotal.inc(tasks);
  }
  resultReceived(turnaroundMs: number) {
    this.results.received.inc();
    this.turnaround.observe(turnaroundMs / 1000);
  }
  taskError() {
    this.results.error.inc();
  }
  validated(valid: number, invalid: number) {
    this.validatedTotal.inc();
    if (valid) this.results.valid.inc(valid);
    if (invalid) this.results.invalid.inc(invalid);
  }
  spotChecked(caught: number) {
    this.spotChecksTotal.inc();
    if (caught) this.caughtTotal.inc(caught);
  }
  jobFinished(state: "completed" | "failed" | "cancelled") {
    this.jobsFinished[state].inc();
  }
  messageRejected() {
    this.rejectedTotal.inc();
  }
  commitSucceeded(items: number, seconds: number) {
    this.commitOpsTotal.inc(items);
    this.commitDuration.observe(seconds);
  }
  commitFailed() {
    this.commitFailuresTotal.inc();
  }
  commitDropped(op: string) {
    this.commitDroppedTotal.inc({ op });
  }
  resultsAcked(ms: number) {
    this.ackDelay.observe(ms / 1000);
  }
  shed(reason: ShedReason, count = 1) {
    this.shedTotal.inc({ reason }, count);
  }
}
