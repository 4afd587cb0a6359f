import type { TaskResult, TaskRun } from "./runTask";

/** One worker as the pool sees it; the browser wraps a Web Worker, Node a worker thread. */
export interface PoolWorker {
  /**
   * `onProgress` (optional) receives the task's own progress reports, 0..1. `withdraw` comes
   * with a task handed ahead (see accepts): aborted, the worker drops the task if it has not
   * started it.
   */
  api: { run(t: TaskRun, onProgress?: (fraction: number) => void, withdraw?: AbortSignal): Promise<TaskResult> };
  terminate(): void;
  /** False once the worker is known to be gone (a program process that exited while idle). */
  alive?(): boolean;
  /**
   * Whether `t` may be handed to this worker now, while it runs another task: the worker
   * queues it and starts it the moment that one ends, without a round trip through the pool
   * (a program process, whose hand-off through the volunteer's event loop cost 1-7 ms a task
   * on a loaded machine). Absent: never.
   */
  accepts?(t: TaskRun): boolean;
}
export type WorkerFactory = () => PoolWorker;

export interface PoolOptions {
  threads: number;
  /** Share of time each worker spends computing, 0.05..1 (default 1: never rests). */
  throttle?: number;
}

export interface RunOptions {
  /**
   * Wall-clock limit for this task, counted from when a worker starts it (not while it
   * queues). On expiry the worker is terminated (whatever it is doing, infinite loops
   * included) and replaced, and the task rejects with "time limit of N s exceeded".
   */
  timeoutMs?: number;
}

export type WorkerState = "idle" | "busy" | "resting" | "paused";

export interface WorkerInfo {
  id: number;
  state: WorkerState;
  /** Label of the running task (the kernel name unless the caller gave one). */
  task?: string;
  /** Tasks this slot completed successfully. */
  done: number;
  /** The running task's last progress report (0..1), if it sent any. */
  progress?: number;
}

interface Job {
  task: TaskRun;
  label: string;
  timeoutMs?: number;
  resolve(r: TaskResult): void;
  reject(e: unknown): void;
}

interface Slot {
  id: number;
  worker: PoolWorker;
  state: "idle" | "busy" | "resting";
  job?: Job;
  done: number;
  /** Leaves the pool when its running task ends (setThreads shrank the pool). */
  retiring: boolean;
  timer?: ReturnType<typeof setTimeout>;
  /** The task handed to the worker ahead (PoolWorker.accepts): it runs once `job` ends. */
  next?: Job;
  /** Takes `next` back from the worker (it is given to a slot that went idle first). */
  withdraw?: AbortController;
  /** How `next` ended, if it did before the pool saw `job` end (never, as workers answer in order). */
  nextOutcome?: { ms: number; failure: { error: unknown } | null; result?: TaskResult };
  /** Fires when the running task's time limit passes. */
  deadline?: ReturnType<typeof setTimeout>;
  progress?: number;
  restStart: number;
  lastMs: number;
}

export const MIN_THROTTLE = 0.05;

function clampThrottle(x: number): number {
  if (!Number.isFinite(x)) throw new RangeError(`throttle must be a number, got ${x}`);
  return Math.min(1, Math.max(MIN_THROTTLE, x));
}

function abortError(): Error {
  const e = new Error("Worker pool terminated");
  e.name = "AbortError";
  return e;
}

/** "time limit of 30 s exceeded" (0.25 s, 1.5 s: as many decimals as the limit has, up to 3). */
export function timeLimitError(timeoutMs: number): Error {
  const s = Number((timeoutMs / 1000).toFixed(3));
  const e = new Error(`time limit of ${s} s exceeded`);
  e.name = "TimeLimitError";
  return e;
}

function restMs(ms: number, throttle: number): number {
  return (ms * (1 - throttle)) / throttle;
}

/**
 * Runs tasks on up to `threads` workers, first come first served. Knows nothing about how a
 * worker is made, so the browser and the Node volunteer share it and tests can fake workers.
 */
export class WorkerPool {
  private slots: Slot[] = [];
  private queue: Job[] = [];
  private listeners = new Set<() => void>();
  private nextId = 1;
  private target = 0;
  private share: number;
  private isPaused = false;
  private terminated = false;

  private readonly factory: WorkerFactory;

  constructor(factory: WorkerFactory, opts: PoolOptions) {
    this.factory = factory;
    this.share = clampThrottle(opts.throttle ?? 1);
    this.setThreads(opts.threads);
  }

  get threads(): number {
    return this.target;
  }
  get throttle(): number {
    return this.share;
  }
  get paused(): boolean {
    return this.isPaused;
  }
  /** Tasks waiting for a worker. */
  get pending(): number {
    return this.queue.length;
  }

  run(task: TaskRun, label: string = task.kernel, opts: RunOptions = {}): Promise<TaskResult> {
    if (this.terminated) return Promise.reject(abortError());
    const timeoutMs = opts.timeoutMs;
    if (timeoutMs !== undefined && !(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
      return Promise.reject(new RangeError(`timeoutMs must be a positive number of milliseconds, got ${timeoutMs}`));
    }
    return new Promise<TaskResult>((resolve, reject) => {
      this.queue.push({ task, label, timeoutMs, resolve, reject });
      this.pump();
    });
  }

  setThreads(n: number): void {
    if (!Number.isFinite(n)) throw new RangeError(`threads must be a number, got ${n}`);
    this.target = Math.max(0, Math.floor(n));
    if (this.terminated) return;
    const active = this.slots.filter((s) => !s.retiring);
    // A retiring slot already has a live worker: keep it rather than start a new one.
    for (const s of this.slots) {
      if (active.length >= this.target) break;
      if (s.retiring) {
        s.retiring = false;
        active.push(s);
      }
    }
    while (active.length < this.target) {
      const slot: Slot = {
        id: this.nextId++,
        worker: this.factory(),
        state: "idle",
        done: 0,
        retiring: false,
        restStart: 0,
        lastMs: 0,
      };
      this.slots.push(slot);
      active.push(slot);
    }
    // Shrink: slots that are not computing go at once (newest first), busy ones after their task.
    const victims = active
      .sort((a, b) => Number(a.state === "busy") - Number(b.state === "busy") || b.id - a.id)
      .slice(0, active.length - this.target);
    for (const s of victims) {
      if (s.state === "busy") s.retiring = true;
      else this.remove(s);
    }
    this.emit();
    this.pump();
  }

  setThrottle(x: number): void {
    this.share = clampThrottle(x);
    if (this.terminated) return;
    // Resting workers rest as long as the new setting asks, counted from when they began.
    for (const s of this.slots) {
      if (s.state !== "resting") continue;
      clearTimeout(s.timer);
      const left = s.restStart + restMs(s.lastMs, this.share) - performance.now();
      if (left > 0) s.timer = setTimeout(() => this.wake(s), left);
      else this.wake(s, false);
    }
    this.emit();
    this.pump();
  }

  /** No new task starts until resume(); running tasks finish. */
  pause(): void {
    if (this.isPaused) return;
    this.isPaused = true;
    this.emit();
  }

  resume(): void {
    if (!this.isPaused) return;
    this.isPaused = false;
    this.emit();
    this.pump();
  }

  /** Stops every worker now; queued and running tasks reject with an AbortError. */
  terminate(): void {
    if (this.terminated) return;
    this.terminated = true;
    const slots = this.slots;
    const queue = this.queue;
    this.slots = [];
    this.queue = [];
    for (const s of slots) {
      clearTimeout(s.timer);
      clearTimeout(s.deadline);
      this.stopWorker(s.worker);
      s.job?.reject(abortError());
      s.next?.reject(abortError());
      s.job = undefined;
      s.next = undefined;
      s.withdraw = undefined;
    }
    for (const job of queue) job.reject(abortError());
    this.emit();
  }

  states(): WorkerInfo[] {
    return this.slots.map((s) => ({
      id: s.id,
      state: s.state === "idle" && this.isPaused ? "paused" : s.state,
      ...(s.job ? { task: s.job.label } : {}),
      ...(s.job && s.progress !== undefined ? { progress: s.progress } : {}),
      done: s.done,
    }));
  }

  /** Calls `cb` after any change visible in states() or the settings; returns an unsubscribe. */
  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => {
      this.listeners.delete(cb);
    };
  }

  private pump(): void {
    if (this.isPaused || this.terminated) return;
    let started = false;
    for (const s of this.slots) {
      if (this.queue.length === 0) break;
      if (s.state === "idle" && !s.retiring) {
        this.start(s, this.queue.shift()!);
        started = true;
      }
    }
    // A slot free while a task waits behind another slot's running one takes it over: a long
    // task must not hold up the next while a worker idles.
    for (const s of this.slots) {
      if (s.state !== "idle" || s.retiring) continue;
      const ahead = this.slots.find((o) => o.next && !o.nextOutcome);
      if (!ahead) break;
      const job = ahead.next!;
      ahead.withdraw?.abort();
      ahead.next = undefined;
      ahead.withdraw = undefined;
      this.start(s, job);
      started = true;
    }
    // Then the next task in line, to a busy worker that takes it ahead. Not while throttled:
    // it would start without the rest its slot owes.
    if (this.share === 1) {
      for (const s of this.slots) {
        if (this.queue.length === 0) break;
        if (s.state === "busy" && !s.next && !s.retiring && s.worker.accepts?.(this.queue[0].task)) this.handAhead(s, this.queue.shift()!);
      }
    }
    if (started) this.emit();
  }

  private start(slot: Slot, job: Job): void {
    slot.state = "busy";
    slot.job = job;
    slot.progress = undefined;
    this.armDeadline(slot, job);
    this.send(slot, job, undefined, (outcome) => this.finish(slot, outcome.worker, job, outcome.ms, outcome.failure, outcome.result));
  }

  /** The time limit counts from now: a task handed ahead is armed when its predecessor ends. */
  private armDeadline(slot: Slot, job: Job): void {
    if (job.timeoutMs === undefined) return;
    const worker = slot.worker;
    // finish() replaces the worker of a failed task, which is what stops the runaway one.
    slot.deadline = setTimeout(() => this.finish(slot, worker, job, job.timeoutMs!, { error: timeLimitError(job.timeoutMs!) }), job.timeoutMs);
  }

  /** Gives the job to the slot's worker; `settled` gets how it ended. */
  private send(
    slot: Slot, job: Job, withdraw: AbortSignal | undefined,
    settled: (o: { worker: PoolWorker; ms: number; failure: { error: unknown } | null; result?: TaskResult }) => void,
  ): void {
    const worker = slot.worker;
    const t0 = performance.now();
    const onProgress = (fraction: number) => {
      if (slot.job !== job || slot.worker !== worker || !Number.isFinite(fraction)) return;
      slot.progress = Math.min(1, Math.max(0, fraction));
      this.emit();
    };
    let result: Promise<TaskResult>;
    try {
      result = worker.api.run(job.task, onProgress, withdraw);
    } catch (e) {
      result = Promise.reject(e);
    }
    result.then(
      (r) => settled({ worker, ms: Number.isFinite(r?.ms) ? r.ms : performance.now() - t0, failure: null, result: r }),
      (e) => settled({ worker, ms: performance.now() - t0, failure: { error: e } }),
    );
  }

  /** Hands `job` to the busy slot's worker, to start when its running task ends (PoolWorker.accepts). */
  private handAhead(slot: Slot, job: Job): void {
    slot.next = job;
    slot.nextOutcome = undefined;
    slot.withdraw = new AbortController();
    this.send(slot, job, slot.withdraw.signal, ({ worker, ms, failure, result }) => {
      if (this.terminated || slot.worker !== worker) return;
      if (slot.job === job) this.finish(slot, worker, job, ms, failure, result);
      else if (slot.next === job) slot.nextOutcome = { ms, failure, result };
    });
  }

  /** The task handed ahead goes back to the head of the queue: its worker is being stopped. */
  private takeBackNext(slot: Slot): void {
    const next = slot.next;
    slot.next = undefined;
    slot.nextOutcome = undefined;
    slot.withdraw = undefined;
    if (next) this.queue.unshift(next);
  }

  private finish(
    slot: Slot,
    worker: PoolWorker,
    job: Job,
    ms: number,
    failure: { error: unknown } | null,
    result?: TaskResult,
  ): void {
    // After terminate() the job was already rejected and the slot is gone.
    if (this.terminated || slot.job !== job || slot.worker !== worker) return;
    slot.job = undefined;
    slot.progress = undefined;
    clearTimeout(slot.deadline);
    slot.deadline = undefined;
    if (failure) job.reject(failure.error);
    else {
      slot.done++;
      job.resolve(result!);
    }
    if (slot.retiring) {
      this.takeBackNext(slot);
      this.remove(slot);
    } else {
      if (failure) {
        this.takeBackNext(slot);
        if (!this.replaceWorker(slot)) return;
      }
      if (slot.next) {
        // The worker has started the task handed to it ahead: it is now the running one.
        const next = slot.next;
        const outcome = slot.nextOutcome;
        slot.next = undefined;
        slot.nextOutcome = undefined;
        slot.withdraw = undefined;
        slot.job = next;
        this.armDeadline(slot, next);
        if (outcome) return this.finish(slot, worker, next, outcome.ms, outcome.failure, outcome.result);
      } else {
        const rest = restMs(ms, this.share);
        if (rest > 0) {
          slot.state = "resting";
          slot.restStart = performance.now();
          slot.lastMs = ms;
          slot.timer = setTimeout(() => this.wake(slot), rest);
        } else {
          slot.state = "idle";
        }
      }
    }
    this.emit();
    this.pump();
  }

  /** A kernel that threw may have left its worker broken: start over with a fresh one. */
  private replaceWorker(slot: Slot): boolean {
    this.stopWorker(slot.worker);
    try {
      slot.worker = this.factory();
      return true;
    } catch (e) {
      this.remove(slot);
      // Nobody is left to run the queue: fail it rather than let callers wait forever.
      if (this.slots.length === 0) this.failQueue(e);
      this.emit();
      return false;
    }
  }

  private wake(slot: Slot, pump = true): void {
    slot.timer = undefined;
    if (slot.state !== "resting") return;
    slot.state = "idle";
    if (pump) {
      this.emit();
      this.pump();
    }
  }

  private remove(slot: Slot): void {
    clearTimeout(slot.timer);
    clearTimeout(slot.deadline);
    this.slots = this.slots.filter((s) => s !== slot);
    this.stopWorker(slot.worker);
  }

  private stopWorker(worker: PoolWorker): void {
    try {
      worker.terminate();
    } catch {
      // Already dead is as good as stopped.
    }
  }

  private failQueue(error: unknown): void {
    const queue = this.queue;
    this.queue = [];
    for (const job of queue) job.reject(error);
  }

  private emit(): void {
    for (const cb of this.listeners) {
      try {
        cb();
      } catch (e) {
        // A broken UI listener must not stop the pool.
        console.error("WorkerPool listener failed", e);
      }
    }
  }
}

export function createPool(factory: WorkerFactory, opts: PoolOptions): WorkerPool {
  return new WorkerPool(factory, opts);
}
