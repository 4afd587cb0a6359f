import { startKernelThread, type BatchWorker } from "../../worker/node/pool";
import { runTask, type TaskResult, type TaskRun } from "../../worker/runtime/runTask";
import { getKernel } from "../../worker/kernels";
import { canonicalJson, digestOf } from "./digest";

/**
 * Units estimated at more reference CPU than this are not recomputed here: the server's one
 * check thread would be theirs for that long. A stranger's units of 30 s each, answered at
 * once with fakes, held every other check (and the newcomers waiting on them) for minutes, and
 * the checks that timed out let the fakes through. Such a unit wants a second host's agreeing
 * result instead (Scheduler.uncheckable), and no ringer is made of it.
 */
export const MAX_CHECK_WORK_MS = 5000;

/** Longest a spot-check (or a batch of them) may take before the unit is decided without it. */
const CHECK_TIMEOUT_MS = 30_000;
/** Checks sent to the thread in one message at most. */
const MAX_BATCH = 64;
/** A check of a unit estimated at most this many ms (UnitSpec.work, the reference machine) may run on the event loop. */
const INLINE_MAX_WORK_MS = 1;
/**
 * Kernels whose estimate bounds their time, whatever the params: `pi` draws a fixed number of
 * samples. Not `mandelbrot` (a unit estimated at 0.99 ms took 38 ms in a bulb of the set, where
 * every pixel runs to maxIter) nor `primes` (5–10 ms for 1 ms estimated on a far range): a
 * consumer could have the loop run those.
 */
const INLINE_KERNELS: ReadonlySet<string> = new Set(["pi"]);
/** Event-loop time (ms) given to such checks in one turn at most; the others go to the thread. */
const INLINE_TURN_MS = 1;

interface Check {
  task: TaskRun;
  resolve: (r: TaskResult) => void;
  reject: (e: Error) => void;
  /** Sent alone: its batch failed (time limit, crash), so it gets a thread and a time limit of its own. */
  alone: boolean;
}

/**
 * The server's own recomputation of a unit of a built-in kernel (a spot-check): the same
 * deterministic kernel code the volunteers run, on a worker thread of its own, so a check
 * never blocks the event loop. One thread: checks are a small share of the work, and the
 * coordinator must keep a core for dispatch.
 *
 * Checks go to the thread in batches, group-commit style: the first alone, and whatever queued
 * while a batch ran together in the next (at most MAX_BATCH). With a new volunteer's every
 * result checked, a check is often a unit of a millisecond, and waking the sleeping thread for
 * each one cost more of the event loop than the check itself. A batch that fails (over its
 * time limit, or its thread died) is sent again one check at a time, so one slow or hostile
 * unit cannot get others decided without their checks.
 *
 * A unit of a kernel whose time its estimate bounds, and tiny (a millisecond or less by that
 * estimate), is checked on the event loop instead, up to a millisecond of such checks a turn:
 * waking the thread and hearing its answer cost the loop more than the check (a `pi` unit of
 * 1,000 samples takes microseconds), and a newcomer's results are all checked. Server CPU per result in a dispatch phase of new
 * hosts fell by a sixth (docs/performance.md, "Spot-checks on the event loop").
 */
export class Verifier {
  private thread: BatchWorker | undefined;
  private warming: Promise<void> | undefined;
  private readonly queue: Check[] = [];
  private running = false;
  private closed = false;
  checks = 0;
  /** Messages sent to the thread (each a batch of checks). */
  batches = 0;
  /** Checks run on the event loop. */
  inline = 0;
  /** Event-loop time spent on checks in this turn (reset by the next turn). */
  private turnMs = 0;

  constructor(private readonly timeoutMs = CHECK_TIMEOUT_MS) {}

  /** Whether units of this kernel can be recomputed here (built-in kernels, not consumers' programs). */
  static canCheck(kernel: string): boolean {
    return getKernel(kernel) !== undefined;
  }

  /**
   * Starts the thread (once) and runs one tiny unit, so the first real check does not wait
   * for start-up. Called when the first job whose units may be checked arrives, not at the
   * server's start: a server with none holds no thread (~20 MB).
   */
  warmUp(): Promise<void> {
    return (this.warming ??= this.run({ kernel: "pi", params: { samples: 1000, seed: 1 }, input: { seed: 1, samples: 1000 } }).then(() => undefined, () => undefined));
  }

  /** Recomputes a unit; `workMs` is its estimated work (UnitSpec.work): a tiny unit may be checked on the event loop. */
  async recompute(kernel: string, params: unknown, input: unknown, workMs?: number): Promise<{ output: unknown; json: string; digest: string }> {
    if (workMs !== undefined && workMs > MAX_CHECK_WORK_MS) {
      throw new Error(`the unit is estimated at ${(workMs / 1000).toFixed(1)} s of work, more than the server recomputes (${MAX_CHECK_WORK_MS / 1000} s)`);
    }
    this.checks++;
    const output = this.inlineTurn(kernel, workMs) ? this.runInline(kernel, params, input) : (await this.run({ kernel, params, input })).output;
    const json = canonicalJson(output);
    return { output, json, digest: digestOf(json) };
  }

  /** Whether a check of this kernel and estimated work runs here, in this turn. */
  private inlineTurn(kernel: string, workMs: number | undefined): boolean {
    if (!INLINE_KERNELS.has(kernel) || workMs === undefined || !(workMs <= INLINE_MAX_WORK_MS) || this.turnMs >= INLINE_TURN_MS || this.closed) return false;
    if (this.turnMs === 0) setImmediate(() => (this.turnMs = 0));
    return true;
  }

  /** The thread's own code (runTask), here: the same parse of the params, the same kernel. */
  private runInline(kernel: string, params: unknown, input: unknown): unknown {
    const start = performance.now();
    try {
      return runTask({ kernel, params, input }).output;
    } finally {
      // At least a little, so a turn's count cannot stay at 0 while checks run.
      this.turnMs += Math.max(0.001, performance.now() - start);
      this.inline++;
    }
  }

  private run(task: TaskRun): Promise<TaskResult> {
    if (this.closed) return Promise.reject(new Error("the verifier is closed"));
    return new Promise((resolve, reject) => {
      this.queue.push({ task, resolve, reject, alone: false });
      if (!this.running) void this.pump();
    });
  }

  private async pump() {
    this.running = true;
    while (this.queue.length && !this.closed) {
      const batch = this.queue[0].alone ? this.queue.splice(0, 1) : this.takeBatch();
      const answers = await this.send(batch);
      if (this.closed) {
        for (const c of batch) c.reject(new Error("the verifier is closed"));
      } else if (Array.isArray(answers)) {
        answers.forEach((a, i) => ("result" in a ? batch[i].resolve(a.result) : batch[i].reject(new Error(a.error))));
      } else if (batch.length > 1) {
        for (const c of batch) c.alone = true;
        this.queue.unshift(...batch);
      } else {
        batch[0].reject(answers);
      }
    }
    this.running = false;
  }

  /** The checks not marked alone from the head of the queue, up to MAX_BATCH. */
  private takeBatch(): Check[] {
    let n = 0;
    while (n < this.queue.length && n < MAX_BATCH && !this.queue[n].alone) n++;
    return this.queue.splice(0, n);
  }

  /** The batch's answers, or why the batch failed as a whole (the thread is then replaced). */
  private async send(batch: Check[]): Promise<Awaited<ReturnType<BatchWorker["runMany"]>> | Error> {
    const thread = (this.thread ??= startKernelThread({ maxOldGenerationSizeMb: 512 }));
    this.batches++;
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<Error>((resolve) => {
      timer = setTimeout(() => resolve(new Error(`time limit of ${this.timeoutMs / 1000} s exceeded`)), this.timeoutMs);
    });
    const answer = await Promise.race([thread.runMany(batch.map((c) => c.task)).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e)))), limit]);
    clearTimeout(timer);
    if (answer instanceof Error && this.thread === thread) {
      thread.terminate();
      this.thread = undefined;
    }
    return answer;
  }

  close() {
    this.closed = true;
    for (const c of this.queue.splice(0)) c.reject(new Error("the verifier is closed"));
    this.thread?.terminate();
    this.thread = undefined;
  }
}
