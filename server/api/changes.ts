import type { EventEmitter } from "node:events";

/**
 * Yields once per burst of `event`s that pass `filter`, at most every `minGapMs`: a busy
 * job emits hundreds of events a second, and a page needs a few fresh snapshots, not each
 * one. Subscribes before the caller backfills, so nothing between the two is missed.
 */
export async function* changes<A extends unknown[]>(
  emitter: EventEmitter,
  event: string,
  filter: (...args: A) => boolean,
  opts: { signal?: AbortSignal; minGapMs: number },
): AsyncGenerator<void> {
  let dirty = false;
  let wake: (() => void) | undefined;
  const onEvent = (...args: A) => {
    if (!filter(...args)) return;
    dirty = true;
    wake?.();
  };
  const onAbort = () => wake?.();
  emitter.on(event, onEvent as (...args: unknown[]) => void);
  opts.signal?.addEventListener("abort", onAbort);
  try {
    while (!opts.signal?.aborted) {
      if (!dirty) await new Promise<void>((r) => (wake = r));
      wake = undefined;
      if (opts.signal?.aborted) return;
      await new Promise((r) => setTimeout(r, opts.minGapMs));
      dirty = false;
      yield;
    }
  } finally {
    emitter.off(event, onEvent as (...args: unknown[]) => void);
    opts.signal?.removeEventListener("abort", onAbort);
  }
}
