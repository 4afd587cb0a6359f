/**
 * Token buckets per caller: `burst` requests at once, refilled at `perSecond`. Light on
 * purpose: it stops a runaway loop, not a determined attacker.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Takes `n` tokens (default one) for `caller`; false, taking none, when it has fewer left.
   * More than `burst` takes the whole burst (it could never be had otherwise).
   */
  take(caller: string, n = 1): boolean {
    n = Math.min(n, this.burst);
    const now = this.now();
    const b = this.buckets.get(caller) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    if (this.buckets.size > 10_000) this.prune(now);
    this.buckets.set(caller, b);
    if (b.tokens < n) return false;
    b.tokens -= n;
    return true;
  }

  /** Drops buckets that have refilled completely (they are the same as a fresh one). */
  private prune(now: number) {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst) this.buckets.delete(k);
    }
  }
}
