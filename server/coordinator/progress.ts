/** Recent completion times of one job, for throughput and ETA on the job page. */
export class Throughput {
  private times: number[] = [];
  constructor(private readonly windowMs = 10_000) {}

  record(now: number, count = 1) {
    for (let i = 0; i < count; i++) this.times.push(now);
    this.trim(now);
  }

  /** Units per second over the last window. */
  rate(now: number): number {
    this.trim(now);
    if (!this.times.length) return 0;
    const span = Math.max(1000, now - this.times[0]);
    return (this.times.length * 1000) / span;
  }

  private trim(now: number) {
    let drop = 0;
    while (drop < this.times.length && this.times[drop] < now - this.windowMs) drop++;
    if (drop) this.times.splice(0, drop);
  }
}
