/** Percentiles by nearest rank over a copy of the samples. */
export function summarize(samples: number[]) {
  const s = Float64Array.from(samples).sort();
  const at = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] : NaN);
  return { count: s.length, p50: at(50), p95: at(95), p99: at(99), max: s.length ? s[s.length - 1] : NaN };
}
export type Summary = ReturnType<typeof summarize>;

/** Counts per `bucketMs` from `start`, as [seconds since start, events per second]. */
export function rateSeries(events: Array<[number, number]>, start: number, end: number, bucketMs = 250): Array<[number, number]> {
  const n = Math.max(1, Math.ceil((end - start) / bucketMs));
  const buckets = new Array<number>(n).fill(0);
  for (const [t, count] of events) {
    const i = Math.floor((t - start) / bucketMs);
    if (i >= 0 && i < n) buckets[i] += count;
  }
  return buckets.map((c, i) => [round((i * bucketMs) / 1000, 3), round((c * 1000) / bucketMs, 0)]);
}

export const round = (x: number, digits = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : x);

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sample histogram for charts: `bins` equal-width bins up to the 99.9th percentile, plus the rest. */
export function histogram(samples: number[], bins = 30): Array<{ upToMs: number; count: number }> {
  if (!samples.length) return [];
  const s = Float64Array.from(samples).sort();
  const top = s[Math.min(s.length - 1, Math.floor(s.length * 0.999))] || s[s.length - 1] || 1;
  const width = top / bins;
  const out = Array.from({ length: bins + 1 }, (_, i) => ({ upToMs: round(i < bins ? (i + 1) * width : s[s.length - 1], 3), count: 0 }));
  for (const x of s) out[Math.min(bins, Math.floor(x / width))].count++;
  return out.filter((b, i) => i < bins || b.count > 0);
}
