/**
 * The dashboard's time series: one sample holds a value for each, taken every few seconds.
 * Alert rules name a series as their metric. Rates and counts are over the sample interval.
 */
export const SERIES = {
  volunteers: "volunteers online (distinct hosts)",
  threads: "worker threads online",
  results_per_second: "results received per second",
  dispatched_per_second: "task instances dispatched per second",
  validated_per_second: "units validated per second",
  queue_depth: "units waiting for a volunteer, all jobs",
  tasks_running: "task instances leased",
  jobs_running: "jobs running",
  starved: "1 while units are queued and no volunteer is online, else 0",
  latency_p50_ms: "lease-to-result time, median",
  latency_p95_ms: "lease-to-result time, 95th percentile",
  latency_p99_ms: "lease-to-result time, 99th percentile",
  invalid_results: "results found invalid by validation",
  task_errors: "results reported as kernel errors",
  task_failure_ratio: "(errors + invalid) / results received; 0 when none were received",
  cpu_percent: "server process CPU, % of one core",
  load1: "1-minute load average of the machine",
  rss_bytes: "server resident memory",
  heap_used_bytes: "V8 heap used",
  heap_total_bytes: "V8 heap total",
  event_loop_lag_ms: "event-loop delay, 99th percentile",
  uptime_seconds: "server uptime",
  disk_free_bytes: "free space where the data directory lives",
  disk_free_ratio: "free / total space where the data directory lives",
  db_errors: "failed database commits and health checks",
} as const;

export type SeriesName = keyof typeof SERIES;

export interface Sample {
  /** Milliseconds since the epoch. */
  at: number;
  values: Record<SeriesName, number>;
}
