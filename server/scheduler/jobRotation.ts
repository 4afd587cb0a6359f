/**
 * The round-robin of jobs that have work to hand out, kept in submission order.
 *
 * Only jobs with queued units are members, so picking the next job never skips idle ones
 * (a scan over every running job per lease would cost O(jobs)). Members sit in an array
 * sorted by submission sequence: a job that gets units back after emptying its queue
 * rejoins at its own place, found by binary search.
 */
export interface RotationMember {
  readonly seq: number;
  inRotation: boolean;
}

export class JobRotation<T extends RotationMember> {
  private ring: T[] = [];
  /** Index of the job served next; may equal ring.length, meaning "wrap to 0". */
  private cursor = 0;

  get size(): number {
    return this.ring.length;
  }

  add(job: T): void {
    if (job.inRotation) return;
    const i = this.lowerBound(job.seq);
    this.ring.splice(i, 0, job);
    job.inRotation = true;
    // A job inserted before the cursor was passed over in this round; it gets its turn in
    // the next one. Inserted at the cursor, it is next in submission order.
    if (i < this.cursor) this.cursor++;
  }

  remove(job: T): void {
    if (!job.inRotation) return;
    const i = this.lowerBound(job.seq);
    if (this.ring[i] !== job) throw new Error(`job rotation out of order at seq ${job.seq}`);
    this.ring.splice(i, 1);
    job.inRotation = false;
    if (i < this.cursor) this.cursor--;
  }

  /** The job whose turn it is, advancing the turn. */
  next(): T | undefined {
    if (this.ring.length === 0) return undefined;
    if (this.cursor >= this.ring.length) this.cursor = 0;
    return this.ring[this.cursor++];
  }

  members(): readonly T[] {
    return this.ring;
  }

  private lowerBound(seq: number): number {
    let lo = 0;
    let hi = this.ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.ring[mid] as T).seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
