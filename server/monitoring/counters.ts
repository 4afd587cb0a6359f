import type { CoordinatorObserver } from "./observer";

// Whole milliseconds are counted exactly below this; above it, buckets are 1/64 of a power of two wide.
const EXACT_MS = 1024;
const EXACT_BITS = 10;
const SUB_BUCKETS = 64;
const MAX_BITS = 40; // 2^40 ms is 35 years: anything longer lands in the last bucket
const BUCKETS = EXACT_MS + (MAX_BITS - EXACT_BITS + 1) * SUB_BUCKETS;

/**
 * Turnaround times of one sample interval, in fixed memory (~12 KB whatever the rate): exact to
 * the millisecond up to a second, and within 1% above (an HDR-style log-linear histogram).
 * A reservoir would be exact only while the interval holds fewer results than it keeps.
 */
export class LatencyHistogram {
  private readonly counts = new Uint32Array(BUCKETS);
  private n = 0;
  private min = Infinity;
  private max = -Infinity;

  get count() {
    return this.n;
  }

  record(ms: number) {
    if (!Number.isFinite(ms)) return;
    const v = Math.max(0, ms);
    this.counts[bucketOf(v)]++;
    this.n++;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /** Nearest-rank quantile (q in [0, 1]) in ms; 0 when nothing was recorded. */
  quantile(q: number): number {
    if (this.n === 0) return 0;
    const rank = Math.min(this.n, Math.max(1, Math.ceil(q * this.n)));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, valueOf(i)));
    }
    return this.max;
  }

  reset() {
    if (this.n === 0) return;
    this.counts.fill(0);
    this.n = 0;
    this.min = Infinity;
    this.max = -Infinity;
  }
}

function bucketOf(ms: number): number {
  const v = Math.round(ms);
  if (v < EXACT_MS) return v;
  const e = Math.min(MAX_BITS, Math.floor(Math.log2(v)));
  const sub = Math.min(SUB_BUCKETS - 1, Math.floor((v / 2 ** e - 1) * SUB_BUCKETS));
  return EXACT_MS + (e - EXACT_BITS) * SUB_BUCKETS + sub;
}

/** The middle of a bucket (the value itself in the exact range). */
function valueOf(bucket: number): number {
  if (bucket < EXACT_MS) return bucket;
  const i = bucket - EXACT_MS;
  const e = EXACT_BITS + Math.floor(i / SUB_BUCKETS);
  const sub = i % SUB_BUCKETS;
  return 2 ** e * (1 + (sub + 0.5) / SUB_BUCKETS);
}

/** What happened during one sample interval. */
export interface IntervalCounts {
  dispatched: number;
  /** Results that came back with an output (before validation). */
  received: number;
  /** Results reported as kernel errors (or outputs of the wrong shape). */
  errors: number;
  validatedUnits: number;
  validResults: number;
  invalidResults: number;
  jobsFinished: Record<"completed" | "failed" | "cancelled", number>;
  messagesRejected: number;
  commits: number;
  commitFailures: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
  latencyP99Ms: number;
}

/**
 * The coordinator's events counted per sample interval: `take()` returns the counts since the
 * previous call and starts a new interval. Only increments on the hot path.
 */
export class IntervalCounters implements CoordinatorObserver {
  private c = fresh();
  private readonly turnaround = new LatencyHistogram();

  dispatched(tasks: number) {
    this.c.dispatched += tasks;
  }
  resultReceived(turnaroundMs: number) {
    this.c.received++;
    this.turnaround.record(turnaroundMs);
  }
  taskError() {
    this.c.errors++;
  }
  validated(valid: number, invalid: number) {
    this.c.validatedUnits++;
    this.c.validResults += valid;
    this.c.invalidResults += invalid;
  }
  spotChecked() {
    // Counted by Prometheus only (tabgrid_spot_checks_total); the dashboard shows validations.
  }
  jobFinished(state: "completed" | "failed" | "cancelled") {
    this.c.jobsFinished[state]++;
  }
  messageRejected() {
    this.c.messagesRejected++;
  }
  commitSucceeded(_items: number, _seconds: number) {
    this.c.commits++;
  }
  commitFailed() {
    this.c.commitFailures++;
  }
  /** Shown as a database error on the dashboard (and so alerted on), like a failed commit. */
  commitDropped() {
    this.c.commitFailures++;
  }
  /** Prometheus only (tabgrid_result_ack_seconds). */
  resultsAcked() {}
  /** Shedding is counted for Prometheus only (tabgrid_load_shed_total); the dashboard has no series for it. */
  shed() {}

  take(): IntervalCounts {
    const counts: IntervalCounts = {
      ...this.c,
      latencyP50Ms: this.turnaround.quantile(0.5),
      latencyP95Ms: this.turnaround.quantile(0.95),
      latencyP99Ms: this.turnaround.quantile(0.99),
    };
    this.c = fresh();
    this.turnaround.reset();
    return counts;
  }
}

function fresh() {
  return {
    dispatched: 0, received: 0, errors: 0, validatedUnits: 0, validResults: 0, invalidResults: 0,
    jobsFinished: { completed: 0, failed: 0, cancelled: 0 }, messagesRejected: 0, commits: 0, commitFailures: 0,
  };
}
