import { describe, expect, it } from "vitest";
import { IntervalCounters, LatencyHistogram } from "../../server/monitoring/counters";
import { fanOut } from "../../server/monitoring/fanOut";
import type { CoordinatorObserver } from "../../server/monitoring/observer";

/** The nearest-rank percentile of sorted values, computed the slow and obviously right way. */
function exactQuantile(sorted: ArrayLike<number>, q: number) {
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length))) - 1];
}

/** A deterministic PRNG (mulberry32), so a failure can be reproduced. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled<T>(items: T[], random: () => number) {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

describe("turnaround percentiles", () => {
  it("are exact to the millisecond below a second, whatever the order of arrival", () => {
    const h = new LatencyHistogram();
    const values = Array.from({ length: 1000 }, (_, i) => i + 1);
    for (const v of shuffled(values, rng(1))) h.record(v);
    expect(h.count).toBe(1000);
    expect(h.quantile(0.5)).toBe(500);
    expect(h.quantile(0.95)).toBe(950);
    expect(h.quantile(0.99)).toBe(990);
    expect(h.quantile(0)).toBe(1);
    expect(h.quantile(1)).toBe(1000);
  });

  it("follow a skewed distribution: a few slow results move p99, not the median", () => {
    const h = new LatencyHistogram();
    const values = [...Array(980).fill(40), ...Array(20).fill(900)];
    for (const v of shuffled(values, rng(2))) h.record(v);
    expect(h.quantile(0.5)).toBe(40);
    expect(h.quantile(0.95)).toBe(40);
    expect(h.quantile(0.99)).toBe(900);
  });

  it("stay within 1% of the exact value above a second (up to hours), in bounded memory", () => {
    const random = rng(3);
    const h = new LatencyHistogram();
    // Log-uniform from 1 ms to 2 hours: every bucket range is exercised.
    const values = Array.from({ length: 200_000 }, () => Math.exp(random() * Math.log(7_200_000)));
    for (const v of values) h.record(v);
    const sorted = Float64Array.from(values).sort();
    for (const q of [0.01, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999]) {
      const exact = exactQuantile(sorted, q);
      expect(Math.abs(h.quantile(q) - exact)).toBeLessThanOrEqual(Math.max(0.5, exact * 0.01));
    }
  });

  it("never report beyond the values seen, and a single value is every percentile", () => {
    const h = new LatencyHistogram();
    h.record(123_456.7);
    expect(h.quantile(0.5)).toBe(123_456.7);
    expect(h.quantile(0.99)).toBe(123_456.7);
    h.record(123_999);
    expect(h.quantile(1)).toBe(123_999);
    expect(h.quantile(0.01)).toBe(123_456.7);
  });

  it("are 0 with nothing recorded, and ignore negative and non-finite input", () => {
    const h = new LatencyHistogram();
    expect(h.quantile(0.99)).toBe(0);
    h.record(Number.NaN);
    h.record(Infinity);
    expect(h.count).toBe(0);
    h.record(-5); // a clock step backwards reads as 0, not as a huge unsigned number
    expect(h.quantile(0.5)).toBe(0);
    expect(h.count).toBe(1);
  });

  it("start over after a reset", () => {
    const h = new LatencyHistogram();
    for (let i = 0; i < 100; i++) h.record(5000);
    h.reset();
    expect(h.count).toBe(0);
    expect(h.quantile(0.5)).toBe(0);
    h.record(7);
    expect(h.quantile(0.99)).toBe(7);
  });
});

describe("interval counters", () => {
  it("count what the coordinator reports and start each interval from zero", () => {
    const c = new IntervalCounters();
    c.dispatched(5);
    c.dispatched(3);
    for (const ms of [10, 20, 30, 40]) c.resultReceived(ms);
    c.taskError();
    c.validated(2, 1);
    c.validated(1, 0);
    c.jobFinished("completed");
    c.jobFinished("failed");
    c.messageRejected();
    c.commitSucceeded(12, 0.003);
    c.commitFailed();
    c.commitFailed();

    expect(c.take()).toEqual({
      dispatched: 8, received: 4, errors: 1, validatedUnits: 2, validResults: 3, invalidResults: 1,
      jobsFinished: { completed: 1, failed: 1, cancelled: 0 }, messagesRejected: 1, commits: 1, commitFailures: 2,
      latencyP50Ms: 20, latencyP95Ms: 40, latencyP99Ms: 40,
    });

    const empty = c.take();
    expect(empty).toEqual({
      dispatched: 0, received: 0, errors: 0, validatedUnits: 0, validResults: 0, invalidResults: 0,
      jobsFinished: { completed: 0, failed: 0, cancelled: 0 }, messagesRejected: 0, commits: 0, commitFailures: 0,
      latencyP50Ms: 0, latencyP95Ms: 0, latencyP99Ms: 0,
    });

    // The percentiles of an interval are of that interval's results only.
    c.resultReceived(700);
    expect(c.take()).toMatchObject({ received: 1, latencyP50Ms: 700, latencyP99Ms: 700 });
  });

  it("are fed together with Prometheus through one fan-out observer", () => {
    const a = new IntervalCounters();
    const calls: string[] = [];
    const b = new Proxy({} as CoordinatorObserver, {
      get: (_, name) => (...args: unknown[]) => calls.push(`${String(name)}(${args.join(",")})`),
    });
    const both = fanOut(a, b);
    both.dispatched(2);
    both.resultReceived(15);
    both.taskError();
    both.validated(1, 1);
    both.jobFinished("cancelled");
    both.messageRejected();
    both.commitSucceeded(4, 0.5);
    both.commitFailed();
    both.commitDropped("result");
    expect(calls).toEqual([
      "dispatched(2)", "resultReceived(15)", "taskError()", "validated(1,1)", "jobFinished(cancelled)",
      "messageRejected()", "commitSucceeded(4,0.5)", "commitFailed()", "commitDropped(result)",
    ]);
    // A dropped op shows as a database error on the dashboard, like a failed commit.
    expect(a.take()).toMatchObject({ dispatched: 2, received: 1, errors: 1, validatedUnits: 1, jobsFinished: { cancelled: 1 }, commits: 1, commitFailures: 2 });
  });
});
