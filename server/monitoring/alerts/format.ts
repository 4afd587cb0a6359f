/**
 * Readable values and messages for alerts: "Free disk is 4.2% of the data volume (below 10%
 * for 60 s)". Each dashboard series says how its values read; anything unknown reads as a
 * plain number, so a rule on a series added later still produces a sensible message.
 */
import { SERIES } from "../series";

type Unit = "ratio" | "bytes" | "ms" | "count" | "rate" | "percent" | "seconds" | "number" | "flag";

interface MetricFormat {
  /** Subject of the sentence: "Free disk", "Server memory (RSS)". */
  label: string;
  unit: Unit;
  /** Appended to a formatted value: "of the data volume". */
  suffix?: string;
  /** A sentence of its own instead of "<label> is <value>" (counts read better this way). */
  sentence?: (formatted: string, value: number) => string;
  /** For 0/1 series: what 1 and 0 mean, as whole sentences. */
  whenOn?: string;
  whenOff?: string;
}

const FORMATS: Record<keyof typeof SERIES, MetricFormat> = {
  volunteers: { label: "Volunteers online", unit: "count" },
  threads: { label: "Worker threads online", unit: "count" },
  results_per_second: { label: "Results received", unit: "rate" },
  dispatched_per_second: { label: "Tasks dispatched", unit: "rate" },
  validated_per_second: { label: "Units validated", unit: "rate" },
  queue_depth: { label: "Queued units", unit: "count" },
  tasks_running: { label: "Leased tasks", unit: "count" },
  jobs_running: { label: "Running jobs", unit: "count" },
  starved: {
    label: "Starved",
    unit: "flag",
    whenOn: "No volunteer is online while units are queued",
    whenOff: "Volunteers are online again (or nothing is queued)",
  },
  latency_p50_ms: { label: "Median task latency", unit: "ms" },
  latency_p95_ms: { label: "95th percentile task latency", unit: "ms" },
  latency_p99_ms: { label: "99th percentile task latency", unit: "ms" },
  invalid_results: { label: "Invalid results", unit: "count", sentence: (f, v) => `${f} invalid result${v === 1 ? "" : "s"} in the last interval` },
  task_errors: { label: "Task errors", unit: "count", sentence: (f, v) => `${f} task error${v === 1 ? "" : "s"} in the last interval` },
  task_failure_ratio: { label: "Task failure rate", unit: "ratio", suffix: "of results" },
  cpu_percent: { label: "Server CPU", unit: "percent", suffix: "of one core" },
  load1: { label: "Load average (1 min)", unit: "number" },
  rss_bytes: { label: "Server memory (RSS)", unit: "bytes" },
  heap_used_bytes: { label: "V8 heap used", unit: "bytes" },
  heap_total_bytes: { label: "V8 heap total", unit: "bytes" },
  event_loop_lag_ms: { label: "Event-loop lag (p99)", unit: "ms" },
  uptime_seconds: { label: "Uptime", unit: "seconds" },
  disk_free_bytes: { label: "Free disk", unit: "bytes" },
  disk_free_ratio: { label: "Free disk", unit: "ratio", suffix: "of the data volume" },
  db_errors: { label: "Database errors", unit: "count", sentence: (f, v) => `${f} database error${v === 1 ? "" : "s"} in the last interval` },
};

function formatOf(metric: string): MetricFormat {
  return (FORMATS as Record<string, MetricFormat>)[metric] ?? { label: metric, unit: "number" };
}

/** At most `decimals` decimals, without trailing zeros: 4.2, 10, 0.5. */
function trim(n: number, decimals: number): string {
  return String(Number(n.toFixed(decimals)));
}

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function formatBytes(n: number): string {
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < BYTE_UNITS.length - 1) (v /= 1024), i++;
  return `${n < 0 ? "-" : ""}${trim(v, i === 0 ? 0 : 1)} ${BYTE_UNITS[i]}`;
}

export function formatMs(n: number): string {
  if (Math.abs(n) >= 1000) return `${trim(n / 1000, 1)} s`;
  return `${trim(n, Math.abs(n) < 10 ? 1 : 0)} ms`;
}

/** A span of time for messages: "45 s", "5 min", "2.5 h", "3 days". */
export function formatDuration(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 2 * 3600) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${trim(s / 3600, 1)} h`;
  return `${trim(s / 86400, 1)} days`;
}

function formatNumber(n: number): string {
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? trim(n, 0) : trim(n, 2);
}

/** One value of `metric`, with its unit: "4.2% of the data volume", "1.6 GiB", "250 ms". */
export function formatValue(metric: string, value: number, opts: { suffix?: boolean } = {}): string {
  const f = formatOf(metric);
  const suffix = f.suffix && opts.suffix !== false ? ` ${f.suffix}` : "";
  switch (f.unit) {
    case "ratio":
      return `${trim(value * 100, 1)}%${suffix}`;
    case "percent":
      return `${trim(value, 1)}%${suffix}`;
    case "bytes":
      return formatBytes(value) + suffix;
    case "ms":
      return formatMs(value) + suffix;
    case "seconds":
      return formatDuration(value * 1000) + suffix;
    case "rate":
      return `${formatNumber(value)}/s${suffix}`;
    default:
      return formatNumber(value) + suffix;
  }
}

/** The threshold side of a message reads without the suffix: "below 10%", "above 1.5 GiB". */
function formatBound(metric: string, value: number): string {
  return formatValue(metric, value, { suffix: false });
}

export interface MessageRule {
  metric: string;
  comparison: ">" | "<";
  threshold: number;
  hysteresis: number;
  forSeconds: number;
}

/** "Free disk is 4.2% of the data volume" (or a flag series' own sentence). */
export function describeValue(metric: string, value: number): string {
  const f = formatOf(metric);
  if (f.unit === "flag") return value > 0.5 ? f.whenOn! : f.whenOff!;
  if (f.sentence) return f.sentence(formatValue(metric, value), value);
  return `${f.label} is ${formatValue(metric, value)}`;
}

/**
 * The message of each alert event. `heldMs` is how long the condition has held (pending,
 * firing, repeat) or how long the alert was firing (resolved).
 */
export function alertMessage(rule: MessageRule, state: "pending" | "firing" | "repeat" | "resolved", value: number, heldMs: number): string {
  const flag = formatOf(rule.metric).unit === "flag";
  const side = rule.comparison === ">" ? "above" : "below";
  const bound = formatBound(rule.metric, rule.threshold);
  const what = describeValue(rule.metric, value);
  switch (state) {
    case "pending": {
      const cond = flag ? "" : `${side} ${bound}; `;
      return `${what} (${cond}fires if it lasts ${formatDuration(rule.forSeconds * 1000)})`;
    }
    case "firing":
    case "repeat": {
      const parts = [flag ? "" : `${side} ${bound}`, heldMs > 0 ? `for ${formatDuration(heldMs)}` : ""].filter(Boolean).join(" ");
      const text = parts ? `${what} (${parts})` : what;
      return state === "repeat" ? `Still firing: ${text}` : text;
    }
    case "resolved": {
      // The line it had to cross to resolve: threshold ∓ hysteresis.
      const line = rule.comparison === ">" ? rule.threshold - rule.hysteresis : rule.threshold + rule.hysteresis;
      const back = flag ? "" : ` (back ${rule.comparison === ">" ? "below" : "above"} ${formatBound(rule.metric, line)})`;
      return `Resolved after ${formatDuration(heldMs)}: ${what}${back}`;
    }
  }
}

const INPUT_UNITS: Record<Unit, string> = {
  ratio: "fraction, 0.1 = 10%", percent: "%", bytes: "bytes", ms: "ms", seconds: "seconds", rate: "per second",
  count: "count", number: "", flag: "1 = on, 0 = off",
};

/** What a rule's raw threshold for `metric` is measured in, for form labels: "bytes", "ms". */
export function thresholdUnit(metric: string): string {
  return INPUT_UNITS[formatOf(metric).unit];
}
