import { SHED_REASONS, type ShedReason } from "../../server/monitoring/observer";

// The few server figures the stress scenarios compare before and after, read from /api/metrics
// as any Prometheus scraper would.

export interface ServerCounters {
  shed: Record<ShedReason, number>;
  messagesRejected: number;
  /** Volunteer sockets open right now (after hello). */
  connections: number;
  tasksQueued: number;
  tasksRunning: number;
  jobsRunning: number;
  /** Group commits so far and the seconds they took in all: how busy the database writer was. */
  commits: number;
  commitSeconds: number;
  /** V8 heap in use: unlike RSS, it comes down again after a peak, so it shows what connections cost. */
  heapUsedMb: number;
}

/** One sample of an exposition text, by its full series name (labels included); `missing` if absent. */
export function metricValue(text: string, series: string, missing = 0): number {
  const m = new RegExp(`^${series.replace(/[{}"]/g, (c) => `\\${c}`)} ([0-9.eE+-]+)$`, "m").exec(text);
  return m ? Number(m[1]) : missing;
}

/** The server's /api/metrics text. */
export async function fetchMetrics(url: string, timeoutMs = 10_000): Promise<string> {
  const res = await fetch(`${url}/api/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET /api/metrics answered ${res.status}`);
  return res.text();
}

export async function scrapeCounters(url: string): Promise<ServerCounters> {
  const text = await fetchMetrics(url);
  const value = (series: string) => metricValue(text, series);
  return {
    shed: Object.fromEntries(SHED_REASONS.map((r) => [r, value(`tabgrid_load_shed_total{reason="${r}"}`)])) as Record<ShedReason, number>,
    messagesRejected: value("tabgrid_volunteer_messages_rejected_total"),
    connections: value("tabgrid_volunteer_connections"),
    tasksQueued: value("tabgrid_tasks_queued"),
    tasksRunning: value("tabgrid_tasks_running"),
    jobsRunning: value("tabgrid_jobs_running"),
    commits: value("tabgrid_commit_duration_seconds_count"),
    commitSeconds: value("tabgrid_commit_duration_seconds_sum"),
    heapUsedMb: value("nodejs_heap_size_used_bytes") / 2 ** 20,
  };
}

/** What moved between two scrapes: counters as differences, gauges as they stand in `after`. */
export function shedBetween(before: ServerCounters, after: ServerCounters): Record<ShedReason, number> {
  return Object.fromEntries(SHED_REASONS.map((r) => [r, after.shed[r] - before.shed[r]])) as Record<ShedReason, number>;
}

/** A histogram's cumulative buckets (upper bound in seconds → count) in one exposition text. */
function buckets(text: string, name: string): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const re = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} ([0-9.eE+-]+)$`, "gm");
  for (const m of text.matchAll(re)) out.push([m[1] === "+Inf" ? Infinity : Number(m[1]), Number(m[2])]);
  return out.sort((a, b) => a[0] - b[0]);
}

/**
 * Quantiles (ms) of what a histogram observed between two scrapes, interpolated within buckets
 * as Prometheus's histogram_quantile does; with the count and the mean.
 */
export function histogramBetween(before: string, after: string, name: string, qs: number[]): { count: number; meanMs: number; quantilesMs: number[] } {
  const b0 = new Map(buckets(before, name));
  const diff = buckets(after, name).map(([le, c]) => [le, c - (b0.get(le) ?? 0)] as [number, number]);
  const count = diff.at(-1)?.[1] ?? 0;
  const sum = metricValue(after, `${name}_sum`) - metricValue(before, `${name}_sum`);
  const quantilesMs = qs.map((q) => {
    if (!count) return NaN;
    const rank = q * count;
    let prevLe = 0;
    let prevC = 0;
    for (const [le, c] of diff) {
      if (c >= rank) {
        // Past the last finite bound: the bound itself, as Prometheus answers.
        if (!Number.isFinite(le)) return prevLe * 1000;
        return (prevLe + ((le - prevLe) * (rank - prevC)) / Math.max(1, c - prevC)) * 1000;
      }
      prevLe = le;
      prevC = c;
    }
    return prevLe * 1000;
  });
  return { count, meanMs: count ? (sum / count) * 1000 : NaN, quantilesMs };
}
