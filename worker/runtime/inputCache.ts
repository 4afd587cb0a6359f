// The inputs a program worker keeps (a CLI volunteer's program process, a browser tab's
// sandboxed Web Worker): an iterative job sends every round's unit of shard i the same input
// blob, and copying it to the worker again each round (1.7 MB for a shard of 10,000 rows × 21
// columns) cost more than computing it. The sender keeps a mirror of the worker's cache (the
// same class, fed the same operations in the same order over an ordered channel) and sends
// only the key of an input the worker holds; a worker that no longer has it answers "missing".

import type { TaskRun } from "./runTask";

/** Bytes a program worker may keep of inputs, on top of its task's memory limit. */
export const INPUT_CACHE_BYTES = 32 * 1024 * 1024;
/** Larger inputs are sent every time. */
export const MAX_CACHED_INPUT_BYTES = 8 * 1024 * 1024;

export type CachedInput = Uint8Array | string;

export function inputSize(v: CachedInput): number {
  return typeof v === "string" ? v.length * 2 : v.byteLength;
}

/** Whether an input can be kept: bytes or text, not too large. */
export function cacheable(v: unknown): v is CachedInput {
  return (v instanceof Uint8Array || typeof v === "string") && inputSize(v) <= MAX_CACHED_INPUT_BYTES;
}

/** Least recently used first out, by total size. `V` is the input (child) or its size (the parent's mirror). */
export class InputCache<V> {
  private readonly entries = new Map<string, { value: V; size: number }>();
  private total = 0;

  constructor(private readonly maxBytes = INPUT_CACHE_BYTES) {}

  /** The value, made the most recently used. */
  get(hash: string): V | undefined {
    const e = this.entries.get(hash);
    if (!e) return undefined;
    this.entries.delete(hash);
    this.entries.set(hash, e);
    return e.value;
  }

  set(hash: string, value: V, size: number) {
    this.delete(hash);
    this.entries.set(hash, { value, size });
    this.total += size;
    for (const [k, e] of this.entries) {
      if (this.total <= this.maxBytes || k === hash) break;
      this.total -= e.size;
      this.entries.delete(k);
    }
  }

  delete(hash: string) {
    const e = this.entries.get(hash);
    if (!e) return;
    this.total -= e.size;
    this.entries.delete(hash);
  }
}

/** The key a task's input is kept under in its worker, if it may be kept: its blob's hash and kind. */
export function inputKey(t: TaskRun): string | undefined {
  const ref = (t.params as { inputRef?: unknown } | undefined)?.inputRef;
  if (typeof ref !== "string" || !cacheable(t.input)) return undefined;
  return `${ref}:${typeof t.input === "string" ? "text" : "bytes"}`;
}
