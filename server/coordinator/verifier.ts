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
/**
 * A check may take this many times its unit's estimate (at least CHECK_MIN_MS) before it is
 * given up: a stranger's mandelbrot view inside a bulb of the set ran 47 times its estimate,
 * and thirteen such units, faked at once and the job cancelled (its escrow back), held the
 * one check thread at 30 s a unit, and every newcomer's checks behind them, for 13 minutes.
 * The kernels' estimates are within about 10 times of honest units' times.
 */
const CHECK_SLACK = 10;
const CHECK_MIN_MS = 2000;
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
  /** Most ms it may take (see CHECK_SLACK). */
  limitMs: number;
  /** True once the check is no longer wanted (its job ended): it is dropped unrun. */
  stale?: () => boolean;
}

/** What a check is about, besides its unit. */
export interface CheckOptions {
  /** The unit's estimated work (UnitSpec.work, ms on the reference machine). */
  work?: number;
  /** The check is dropped unrun (rejected) if this is true when its turn comes. */
  stale?: () => boolean;
  /** Whose job it is: owners take turns at the thread. */
  owner?: string;
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
 * Owners take turns: a batch holds one owner's checks, and the next batch goes to the next
 * owner waiting (round robin, as the reduce threads' FairSlots). In one line, a stranger's
 * slow units, faked by the dozen, went first and every newcomer's check of other jobs, which
 * its first job waits on, queued behind them all; now it waits for one batch of theirs.
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
  /** Queued checks by owner, the owners in the order they will be served. */
  private readonly queues = new Map<string, Check[]>();
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

  /**
   * Recomputes a unit. With its estimated work a tiny unit may be checked on the event loop,
   * and a check may take CHECK_SLACK times it.
   */
  async recompute(kernel: string, params: unknown, input: unknown, opts: CheckOptions = {}): Promise<{ output: unknown; json: string; digest: string }> {
    const { work: workMs, stale, owner = "" } = opts;
    if (workMs !== undefined && workMs > MAX_CHECK_WORK_MS) {
      throw new Error(`the unit is estimated at ${(workMs / 1000).toFixed(1)} s of work, more than the server recomputes (${MAX_CHECK_WORK_MS / 1000} s)`);
    }
    this.checks++;
    const limitMs = workMs === undefined ? this.timeoutMs : Math.min(this.timeoutMs, Math.max(CHECK_MIN_MS, CHECK_SLACK * workMs));
    const output = this.inlineTurn(kernel, workMs) ? this.runInline(kernel, params, input) : (await this.run({ kernel, params, input }, limitMs, stale, owner)).output;
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

  private run(task: TaskRun, limitMs = this.timeoutMs, stale?: () => boolean, owner = ""): Promise<TaskResult> {
    if (this.closed) return Promise.reject(new Error("the verifier is closed"));
    return new Promise((resolve, reject) => {
      const check: Check = { task, resolve, reject, alone: false, limitMs, ...(stale ? { stale } : {}) };
      const queue = this.queues.get(owner);
      if (queue) queue.push(check);
      else this.queues.set(owner, [check]);
      if (!this.running) void this.pump();
    });
  }

  private async pump() {
    this.running = true;
    while (this.queues.size && !this.closed) {
      this.dropStale();
      const turn = this.nextTurn();
      if (!turn) break;
      const [owner, batch] = turn;
      const answers = await this.send(batch);
      if (this.closed) {
        for (const c of batch) c.reject(new Error("the verifier is closed"));
      } else if (Array.isArray(answers)) {
        answers.forEach((a, i) => ("result" in a ? batch[i].resolve(a.result) : batch[i].reject(new Error(a.error))));
      } else if (batch.length > 1) {
        // Each again alone, at the head of its owner's line (the owner keeps its place in the round).
        for (const c of batch) c.alone = true;
        const queue = this.queues.get(owner);
        if (queue) queue.unshift(...batch);
        else this.queues.set(owner, batch);
      } else {
        batch[0].reject(answers);
      }
    }
    this.running = false;
  }

  /** Rejects, unrun, the queued checks no longer wanted (their jobs ended). */
  private dropStale() {
    for (const [owner, queue] of this.queues) {
      let kept = 0;
      for (const c of queue) {
        if (c.stale?.()) c.reject(new Error("its job ended before its turn"));
        else queue[kept++] = c;
      }
      queue.length = kept;
      if (!kept) this.queues.delete(owner);
    }
  }

  /**
   * The first owner in line and its batch: one check marked alone, or those not marked alone
   * from the head of its line, up to MAX_BATCH. An owner with more goes to the back of the line.
   */
  private nextTurn(): [string, Check[]] | undefined {
    const first = this.queues.entries().next();
    if (first.done) return undefined;
    const [owner, queue] = first.value;
    let n = 1;
    if (!queue[0].alone) while (n < queue.length && n < MAX_BATCH && !queue[n].alone) n++;
    const batch = queue.splice(0, n);
    this.queues.delete(owner);
    if (queue.length) this.queues.set(owner, queue);
    return [owner, batch];
  }

  /** The batch's answers, or why the batch failed as a whole (the thread is then replaced). */
  private async send(batch: Check[]): Promise<Awaited<ReturnType<BatchWorker["runMany"]>> | Error> {
    const thread = (this.thread ??= startKernelThread({ maxOldGenerationSizeMb: 512 }));
    this.batches++;
    let timer: NodeJS.Timeout | undefined;
    const limitMs = Math.min(this.timeoutMs, batch.reduce((sum, c) => sum + c.limitMs, 0));
    const limit = new Promise<Error>((resolve) => {
      timer = setTimeout(() => resolve(new Error(`time limit of ${limitMs / 1000} s exceeded`)), limitMs);
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
    for (const queue of this.queues.values()) for (const c of queue) c.reject(new Error("the verifier is closed"));
    this.queues.clear();
    this.thread?.terminate();
    this.thread = undefined;
  }
}
