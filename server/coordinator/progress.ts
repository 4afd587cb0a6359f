/**
 * Recent completions of one job (or the cluster), for throughput and ETA: counts in 100 ms
 * buckets over a sliding window, so recording is O(1) however many units per second finish.
 */
export class Throughput {
  private static readonly BUCKET_MS = 100;
  private readonly counts: Float64Array;
  /** Bucket number (time / BUCKET_MS) of the newest bucket written. */
  private head = -1;
  private first = Infinity;

  constructor(private readonly windowMs = 10_000) {
    this.counts = new Float64Array(Math.ceil(windowMs / Throughput.BUCKET_MS));
  }

  record(now: number, count = 1) {
    this.advance(now);
    this.counts[this.head % this.counts.length] += count;
    this.first = Math.min(this.first, now);
  }

  /** Units per second over the last window (or since the first completion, if more recent; at least 1 s). */
  rate(now: number): number {
    this.advance(now);
    let total = 0;
    for (const c of this.counts) total += c;
    if (!total) return 0;
    // The kept buckets cover the older ones whole and the newest up to now.
    const B = Throughput.BUCKET_MS;
    const covered = (this.counts.length - 1) * B + (now - this.head * B);
    const span = Math.min(covered, Math.max(1000, now - this.first));
    return (total * 1000) / span;
  }

  /** Moves the window to `now`, clearing buckets that fell out of it. */
  private advance(now: number) {
    const bucket = Math.floor(now / Throughput.BUCKET_MS);
    if (this.head < 0) this.head = bucket;
    if (bucket <= this.head) return;
    const n = this.counts.length;
    // A silence longer than the window: what comes next starts a new span.
    if (bucket - this.head >= n) this.first = Infinity;
    for (let b = this.head + 1, k = 0; b <= bucket && k < n; b++, k++) this.counts[b % n] = 0;
    this.head = bucket;
  }
}
