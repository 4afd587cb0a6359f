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

/** How to send one task's input to a program worker (see InputMirror.request). */
export interface InputRequest {
  /** The key the worker keeps the input under, if it may keep it. */
  readonly key: string | undefined;
  /** The worker holds the input: send the key and leave the input out. */
  readonly cached: boolean;
  /**
   * The worker answered "missing". True, once, for a cached request: send the input in full,
   * without a key. False otherwise: a worker that asks again (or asks for an input it was just
   * sent) breaks the protocol, whatever its program makes it say, and the task should fail
   * rather than loop on resends until its time limit.
   */
  missed(): boolean;
}

/**
 * The sender's mirror of one program worker's input cache (sizes only), fed the same
 * operations in the same order as the worker's own cache. New with each worker.
 */
export class InputMirror {
  private readonly held: InputCache<true>;

  constructor(maxBytes = INPUT_CACHE_BYTES) {
    this.held = new InputCache<true>(maxBytes);
  }

  /** How to send task `t`; a full send of a keyed input is recorded as kept by the worker. */
  request(t: TaskRun): InputRequest {
    const key = inputKey(t);
    const cached = key !== undefined && this.held.get(key) !== undefined;
    if (key !== undefined && !cached) this.held.set(key, true, inputSize(t.input as CachedInput));
    let resent = false;
    return {
      key,
      cached,
      missed: () => {
        if (key !== undefined) this.held.delete(key);
        if (!cached || resent) return false;
        resent = true;
        return true;
      },
    };
  }
}

/** The message a worker that breaks the input protocol fails its task with. */
export const INPUT_PROTOCOL_ERROR = "the program worker asked again for an input it was sent";

/** The key a task's input is kept under in its worker, if it may be kept: its blob's hash and kind. */
export function inputKey(t: TaskRun): string | undefined {
  const ref = (t.params as { inputRef?: unknown } | undefined)?.inputRef;
  if (typeof ref !== "string" || !cacheable(t.input)) return undefined;
  return `${ref}:${typeof t.input === "string" ? "text" : "bytes"}`;
}
