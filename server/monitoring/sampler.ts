import { EventEmitter } from "node:events";
import type { Db } from "../store/prisma";
import type { IntervalCounts, IntervalCounters } from "./counters";
import { completeValues, SampleHistory } from "./history";
import type { Sample, SeriesName } from "./series";
import { SystemProbe, type SystemReading } from "./system";

/** What the sampler reads from the coordinator (its `status()`). */
export interface ClusterSource {
  status(): {
    volunteers: number; threads: number; tasksQueued: number; tasksRunning: number; jobsRunning: number;
    connections?: number; pendingCommits?: number;
  };
}

export interface SystemSource {
  read(): Promise<SystemReading>;
  stop(): void;
}

export interface SamplerOptions {
  db: Db;
  cluster: ClusterSource;
  counters: IntervalCounters;
  /** Where DATA_DIR lives, for disk space (unless `system` is given). */
  dataDir: string;
  /** Time between samples (METRICS_INTERVAL_SECONDS). */
  intervalMs: number;
  /** Downsampled row width; shortened in tests. Default a minute. */
  minuteMs?: number;
  /** Full-resolution history kept in memory, and minute rows loaded at start. Default an hour. */
  bufferMs?: number;
  /** Minute rows older than this are deleted. Default 7 days. */
  retentionMs?: number;
  /** How often old rows are deleted. Default an hour. */
  pruneEveryMs?: number;
  /** The clock that stamps samples; injected in tests. */
  now?: () => number;
  system?: SystemSource;
  log?: (m: string) => void;
  /** Cluster mode: the node whose samples these are (each node records and shows its own). */
  node?: string;
}

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const RETENTION_MS = 7 * 24 * HOUR_MS;

/** One dashboard sample from what was counted, the cluster's state and the system's. */
export function toSample(input: {
  at: number;
  /** Length of the interval the counts cover. */
  seconds: number;
  counts: IntervalCounts;
  cluster: ReturnType<ClusterSource["status"]>;
  system: SystemReading;
  uptimeSeconds: number;
  /** Failed commits, health checks and history writes in the interval. */
  dbErrors: number;
}): Sample {
  const { counts: c, cluster, system: s, seconds } = input;
  const perSecond = (n: number) => (seconds > 0 ? n / seconds : 0);
  // Every result a volunteer reported: outputs and errors alike.
  const reported = c.received + c.errors;
  const values: Record<SeriesName, number> = {
    volunteers: cluster.volunteers,
    threads: cluster.threads,
    results_per_second: perSecond(c.received),
    dispatched_per_second: perSecond(c.dispatched),
    validated_per_second: perSecond(c.validatedUnits),
    queue_depth: cluster.tasksQueued,
    tasks_running: cluster.tasksRunning,
    jobs_running: cluster.jobsRunning,
    starved: cluster.tasksQueued > 0 && cluster.volunteers === 0 ? 1 : 0,
    latency_p50_ms: c.latencyP50Ms,
    latency_p95_ms: c.latencyP95Ms,
    latency_p99_ms: c.latencyP99Ms,
    invalid_results: c.invalidResults,
    task_errors: c.errors,
    task_failure_ratio: reported > 0 ? Math.min(1, (c.errors + c.invalidResults) / reported) : 0,
    cpu_percent: s.cpuPercent,
    load1: s.load1,
    rss_bytes: s.rssBytes,
    heap_used_bytes: s.heapUsedBytes,
    heap_total_bytes: s.heapTotalBytes,
    event_loop_lag_ms: s.eventLoopLagMs,
    uptime_seconds: input.uptimeSeconds,
    disk_free_bytes: s.diskFreeBytes,
    disk_free_ratio: s.diskTotalBytes > 0 ? s.diskFreeBytes / s.diskTotalBytes : 0,
    db_errors: input.dbErrors,
  };
  return { at: input.at, values: completeValues(values) };
}

/**
 * Takes a `Sample` every interval into an hour of in-memory history and emits "sample";
 * averages each minute into a MetricSample row (kept 7 days) and reloads the last hour of
 * those rows at start, so the dashboard has history right after a restart.
 */
export class MonitoringSampler extends EventEmitter<{ sample: [Sample] }> {
  readonly intervalMs: number;
  readonly minuteMs: number;
  private readonly bufferMs: number;
  private readonly retentionMs: number;
  private readonly pruneEveryMs: number;
  private readonly now: () => number;
  private readonly system: SystemSource;
  private readonly store: SampleHistory;
  private readonly startedAt: number;
  private lastAt: number;
  private lastPruneAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<Sample | undefined> | undefined;
  /** Failed history writes, reported in the next sample's db_errors. */
  private writeErrors = 0;
  private stopped = false;

  constructor(private readonly opts: SamplerOptions) {
    super();
    this.setMaxListeners(0);
    this.intervalMs = opts.intervalMs;
    this.minuteMs = opts.minuteMs ?? MINUTE_MS;
    this.bufferMs = opts.bufferMs ?? HOUR_MS;
    this.retentionMs = opts.retentionMs ?? RETENTION_MS;
    this.pruneEveryMs = opts.pruneEveryMs ?? HOUR_MS;
    this.now = opts.now ?? Date.now;
    this.system = opts.system ?? new SystemProbe({ dataDir: opts.dataDir, db: opts.db, log: opts.log });
    this.store = new SampleHistory({ bufferMs: this.bufferMs, minuteMs: this.minuteMs, intervalMs: this.intervalMs });
    this.startedAt = this.lastAt = this.now();
  }

  /** Loads the last hour of minute rows, prunes old ones and starts the interval timer. */
  async start() {
    const now = this.now();
    try {
      this.store.addMinutes(await this.storedMinutes(now - this.bufferMs));
    } catch (e) {
      this.log(`could not load metric history: ${(e as Error).message}`);
    }
    await this.prune(now);
    if (this.stopped) return;
    this.lastAt = now;
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  /** Takes one sample now (the timer calls this; tests call it with their own clock). */
  tick(): Promise<Sample | undefined> {
    if (this.stopped) return Promise.resolve(undefined);
    // A slow disk or database must not pile samples up: an overlapping tick joins the running one.
    this.inFlight ??= this.sample().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  /** Ascending: minute averages from before the in-memory buffer, then the buffer (the last hour). */
  history(sinceMs?: number): Sample[] {
    return this.store.history(sinceMs);
  }

  latest(): Sample | undefined {
    return this.store.latest();
  }

  /**
   * Like `history` but reaching back as far as the database keeps (7 days): minute rows from
   * before what is in memory, then `history()`. Reads the database only for more than the hour.
   */
  async longHistory(sinceMs: number): Promise<Sample[]> {
    const recent = this.store.history(sinceMs);
    if (sinceMs >= this.now() - this.bufferMs) return recent;
    return [...(await this.storedMinutes(sinceMs, recent[0]?.at ?? Infinity)), ...recent];
  }

  /** Minute averages from the database, for ranges longer than the in-memory hour (up to 7 days). */
  async storedMinutes(sinceMs: number, untilMs = Infinity): Promise<Sample[]> {
    const rows = await this.opts.db.metricSample.findMany({
      where: { node: this.opts.node ?? "", at: { gte: new Date(sinceMs), ...(untilMs < Infinity ? { lt: new Date(untilMs) } : {}) } },
      select: { at: true, values: true },
      orderBy: [{ at: "asc" }, { id: "asc" }],
    });
    return rows.map((r) => ({ at: r.at.getTime(), values: completeValues(parseValues(r.values)) }));
  }

  /** Stops the timer, waits for a sample in progress and saves the minute still open. */
  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    await this.inFlight?.catch(() => undefined);
    const open = this.store.closeOpenMinute();
    if (open) await this.write(open);
    this.system.stop();
  }

  private async sample(): Promise<Sample | undefined> {
    try {
      const system = await this.system.read();
      const at = this.now();
      const counts = this.opts.counters.take();
      const seconds = (at > this.lastAt ? at - this.lastAt : this.intervalMs) / 1000;
      this.lastAt = at;
      const dbErrors = counts.commitFailures + (system.dbOk ? 0 : 1) + this.writeErrors;
      this.writeErrors = 0;
      const sample = toSample({
        at, seconds, counts, cluster: this.opts.cluster.status(), system,
        uptimeSeconds: (at - this.startedAt) / 1000, dbErrors,
      });
      const closed = this.store.add(sample);
      try {
        this.emit("sample", sample);
      } catch (e) {
        this.log(`a "sample" listener failed: ${(e as Error).stack}`);
      }
      if (closed) await this.write(closed);
      if (at - this.lastPruneAt >= this.pruneEveryMs) await this.prune(at);
      return sample;
    } catch (e) {
      this.log(`sampling failed: ${(e as Error).stack}`);
      return undefined;
    }
  }

  private async write(minute: Sample) {
    try {
      await this.opts.db.metricSample.create({ data: { at: new Date(minute.at), values: JSON.stringify(minute.values), node: this.opts.node ?? "" } });
    } catch (e) {
      this.writeErrors++;
      this.log(`could not save metric history: ${(e as Error).message}`);
    }
  }

  private async prune(now: number) {
    this.lastPruneAt = now;
    try {
      await this.opts.db.metricSample.deleteMany({ where: { at: { lt: new Date(now - this.retentionMs) } } });
    } catch (e) {
      this.writeErrors++;
      this.log(`could not prune metric history: ${(e as Error).message}`);
    }
  }

  private log(m: string) {
    this.opts.log?.(`[monitoring] ${m}`);
  }
}

function parseValues(json: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(json);
    return v && typeof v === "object" ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
