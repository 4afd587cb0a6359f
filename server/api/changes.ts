import type { EventEmitter } from "node:events";

/** An iterator of bursts of changes; `close()` stops listening even if it was never iterated. */
export type Changes = AsyncGenerator<void> & { close(): void };

/**
 * Yields once per burst of `event`s that pass `filter`, at most every `minGapMs`: a busy
 * job emits hundreds of events a second, and a page needs a few fresh snapshots, not each
 * one. It listens from the moment it is called (not from the first `next()`), so a caller
 * that backfills first misses nothing between the two; close it when done.
 */
export function changes<A extends unknown[]>(
  emitter: EventEmitter,
  event: string,
  filter: (...args: A) => boolean,
  opts: { signal?: AbortSignal; minGapMs: number },
): Changes {
  let dirty = false;
  let closed = false;
  let wake: (() => void) | undefined;
  const onEvent = (...args: A) => {
    if (!filter(...args)) return;
    dirty = true;
    wake?.();
  };
  const close = () => {
    if (closed) return;
    closed = true;
    emitter.off(event, onEvent as (...args: unknown[]) => void);
    opts.signal?.removeEventListener("abort", close);
    wake?.();
  };
  emitter.on(event, onEvent as (...args: unknown[]) => void);
  opts.signal?.addEventListener("abort", close);
  if (opts.signal?.aborted) close();

  async function* bursts(): AsyncGenerator<void> {
    try {
      while (!closed) {
        if (!dirty) await new Promise<void>((r) => (wake = r));
        wake = undefined;
        if (closed) return;
        await new Promise((r) => setTimeout(r, opts.minGapMs));
        if (closed) return;
        dirty = false;
        yield;
      }
    } finally {
      close();
    }
  }
  return Object.assign(bursts(), { close });
}
