/**
 * Group commit: callers enqueue items and get a promise that settles once the item is
 * durably committed. Items gathered within `intervalMs` (0: within the current event-loop
 * turn), and everything enqueued while the previous commit ran, up to `maxBatch`, are
 * written by one `commit` call, i.e. one database transaction, which is what makes tens of
 * thousands of small results per second affordable on SQLite: the busier the server, the
 * bigger the batches, with no added latency when it is quiet. A batch is also bounded by
 * the bytes its items carry (`weight`, `maxBytes`): a volunteer's results of 4 MB each made a
 * batch of a few hundred too big to send to the writer thread (V8's longest string), and the
 * commit failed and was retried forever. A failed commit is retried with backoff; items keep
 * their order. An error that `isolate` says is the data's own (a value out of a column's
 * range, a constraint broken: it would fail every retry and stop every commit behind it) is
 * narrowed down instead: the batch is committed in halves, in order, down to the one item
 * that fails alone, which is tried `LONE_TRIES` times and then dropped and reported.
 */
/** Tries of an item that failed alone on its data before it is dropped (a race clears on a retry). */
export const LONE_TRIES = 3;

/** Up to maxBatch items that will commit together, sharing one promise (no allocation per item). */
interface Segment<T> {
  items: T[];
  /** The items' weights summed. */
  bytes: number;
  done: Promise<void>;
  resolve: () => void;
}

export class GroupCommitter<T> {
  private segments: Array<Segment<T>> = [];
  private count = 0;
  /** The segment being committed right now: nothing joins it. */
  private writing: Segment<T> | undefined;
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private timerIsImmediate = false;
  private running: Promise<void> | undefined;
  private failures = 0;
  private closed = false;
  /** Settles once the most recently enqueued item (and so every earlier one) is committed. */
  private last: Promise<void> = Promise.resolve();

  constructor(
    private readonly commit: (items: T[]) => Promise<void>,
    private readonly opts: {
      intervalMs: number;
      maxBatch: number;
      /** Most bytes (by `weight`) a batch carries; an item heavier than that alone makes a batch. */
      maxBytes?: number;
      weight?: (item: T) => number;
      onError?: (e: unknown) => void;
      /** Whether a failed commit's error comes from the items' data (see the top of the file). */
      isolate?: (e: unknown) => boolean;
      /** An item that failed alone `LONE_TRIES` times on its data; it is not committed. */
      onDropped?: (item: T, e: unknown) => void;
      /**
       * Called as the last batch queued is sealed (nothing queued after it yet): an item to
       * append to it, made of state that items enqueued so far left behind (rows accumulated
       * over the batch rather than one item each). Not called for a batch with others queued
       * behind it, so what it writes never lands before the items it follows from.
       */
      seal?: () => T | undefined;
    },
  ) {}

  enqueue(item: T): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the commit queue is closed"));
    const bytes = this.opts.weight?.(item) ?? 0;
    const maxBytes = this.opts.maxBytes ?? Infinity;
    let seg = this.segments.at(-1);
    if (!seg || seg.items.length >= this.opts.maxBatch || seg === this.writing || (seg.items.length && seg.bytes + bytes > maxBytes)) {
      seg = fresh<T>();
      this.segments.push(seg);
    }
    seg.items.push(item);
    seg.bytes += bytes;
    this.count++;
    this.last = seg.done;
    if (seg.items.length >= this.opts.maxBatch || seg.bytes >= maxBytes) this.kick(0);
    else this.kick(this.opts.intervalMs);
    return seg.done;
  }

  /**
   * Resolves when everything enqueued so far is committed (batches commit in order). Unlike
   * drain(), it does not wait for items enqueued later, so it ends under sustained load.
   */
  committedSoFar(): Promise<void> {
    return this.last;
  }

  get size(): number {
    return this.count;
  }

  /** Commits everything queued so far (used at shutdown and by tests). */
  async drain(): Promise<void> {
    while (this.count || this.running) {
      if (this.running) await this.running;
      else await this.flush();
    }
  }

  async close(): Promise<void> {
    await this.drain();
    this.closed = true;
    this.cancelTimer();
  }

  private kick(delay: number) {
    if (this.running || (this.timer && delay > 0)) return;
    this.cancelTimer();
    const fire = () => {
      this.timer = undefined;
      void this.flush();
    };
    // 0: at the end of this turn of the event loop, so a whole frame of results (and all
    // that arrives while a commit runs) shares one transaction without waiting on a clock.
    this.timerIsImmediate = delay <= 0;
    this.timer = delay > 0 ? setTimeout(fire, delay) : setImmediate(fire);
  }

  private cancelTimer() {
    if (this.timer === undefined) return;
    if (this.timerIsImmediate) clearImmediate(this.timer as NodeJS.Immediate);
    else clearTimeout(this.timer as NodeJS.Timeout);
    this.timer = undefined;
  }

  private async flush(): Promise<void> {
    if (this.running || !this.count) return;
    // The head segment is the batch; it leaves the queue only once committed, and what is
    // enqueued meanwhile starts a segment of its own (see enqueue).
    const seg = this.segments[0];
    this.writing = seg;
    if (this.segments.length === 1 && this.opts.seal) {
      const extra = this.opts.seal();
      if (extra !== undefined) {
        seg.items.push(extra);
        this.count++;
      }
    }
    this.running = (async () => {
      try {
        await this.commitSegment(seg);
        this.failures = 0;
        this.segments.shift();
        seg.resolve();
      } catch (e) {
        this.failures++;
        this.opts.onError?.(e);
      }
    })();
    await this.running;
    this.running = undefined;
    this.writing = undefined;
    if (this.count) this.kick(this.failures ? Math.min(5000, 50 * 2 ** this.failures) : 0);
  }

  /**
   * Commits a segment's items, in halves on an error of their data (see the top of the file).
   * What was committed or dropped leaves `seg.items` as it goes, so that a retry after
   * another error (the database gone for a moment) writes none of it twice.
   */
  private async commitSegment(seg: Segment<T>): Promise<void> {
    const chunks: T[][] = [seg.items];
    let loneTries = 0;
    while (chunks.length) {
      const chunk = chunks[0];
      try {
        await this.commit(chunk);
      } catch (e) {
        if (!this.opts.isolate?.(e)) {
          if (chunks.length > 1 || chunk !== seg.items) seg.items = chunks.flat();
          throw e;
        }
        if (chunk.length > 1) {
          const mid = chunk.length >> 1;
          chunks.splice(0, 1, chunk.slice(0, mid), chunk.slice(mid));
          continue;
        }
        if (++loneTries < LONE_TRIES) {
          await new Promise((r) => setTimeout(r, 50 * loneTries));
          continue;
        }
        this.opts.onDropped?.(chunk[0], e);
      }
      loneTries = 0;
      chunks.shift();
      this.count -= chunk.length;
    }
    seg.items = [];
  }
}

function fresh<T>(): Segment<T> {
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  return { items: [], bytes: 0, done, resolve };
}
