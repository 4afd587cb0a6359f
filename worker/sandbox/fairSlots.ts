// A few slots shared by many accounts: each account runs at most one thing at a time, and a
// freed slot goes to the account that has waited its turn longest (round robin over the
// accounts waiting, first come first served within one). A plain semaphore served the queue
// in order, so one account that queued many slow runs held every slot for all of them.

export class FairSlots {
  private running = 0;
  private readonly busy = new Set<string>();
  /** Waiting runs by account, the accounts in the order they will be served. */
  private readonly waiting = new Map<string, Array<() => void>>();

  constructor(private readonly slots: number) {}

  /**
   * Runs `fn` once a slot is free and `key` has nothing else running. Aborted while it waits,
   * the run leaves the line at once and rejects with the signal's reason (a cancelled job's
   * reduce waited for its account's other run to end, up to the server's cap).
   */
  async run<T>(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    if (this.running < this.slots && !this.busy.has(key)) this.take(key);
    else {
      await new Promise<void>((resolve, reject) => {
        const turn = () => {
          signal?.removeEventListener("abort", leave);
          resolve();
        };
        const leave = () => {
          const queue = this.waiting.get(key);
          const at = queue?.indexOf(turn) ?? -1;
          if (at >= 0) queue!.splice(at, 1);
          if (queue && !queue.length) this.waiting.delete(key);
          reject(signal!.reason);
        };
        signal?.addEventListener("abort", leave, { once: true });
        const queue = this.waiting.get(key);
        if (queue) queue.push(turn);
        else this.waiting.set(key, [turn]);
      });
    }
    try {
      return await fn();
    } finally {
      this.running--;
      this.busy.delete(key);
      this.next();
    }
  }

  /** Runs waiting or running now (for tests and metrics). */
  get size() {
    let n = this.running;
    for (const q of this.waiting.values()) n += q.length;
    return n;
  }

  private take(key: string) {
    this.running++;
    this.busy.add(key);
  }

  /** Hands free slots to the first waiting accounts with nothing running; each goes to the back of the line. */
  private next() {
    for (const [key, queue] of this.waiting) {
      if (this.running >= this.slots) return;
      if (this.busy.has(key)) continue;
      const resolve = queue.shift()!;
      this.waiting.delete(key);
      if (queue.length) this.waiting.set(key, queue);
      this.take(key);
      resolve();
    }
  }
}
