// Routes each task of a volunteer to the right kind of worker: built-in kernels to the
// ordinary (trusted) workers, consumer programs (`kernel: "program"`) to sandboxed ones.
// Routing happens per pool slot rather than between two pools, so a volunteer with N threads
// never computes more than N tasks at once, whatever the mix, and throttling, pausing, the
// per-task time limit and worker replacement are the generic WorkerPool's own.

import { WorkerPool, type PoolOptions, type PoolWorker, type WorkerFactory } from "../runtime/pool";
import type { TaskResult, TaskRun } from "../runtime/runTask";
import { isProgramParams, PROGRAM_KERNEL, type ProgramRunParams } from "./abi";

export interface RoutingPoolOptions extends PoolOptions {
  /** Makes a worker for built-in kernels (created with its slot). */
  kernels: WorkerFactory;
  /** Makes a sandboxed worker for programs (created when the slot first runs one). */
  programs: WorkerFactory;
  /** Creates each slot's program worker with the slot rather than for its first program (see DedicatedProgramWorkerOptions.warm). */
  warmPrograms?: boolean;
}

/** One slot's worker: a kernel worker and, once needed (or at once, `warm`), a program worker beside it. */
export function routingWorker(kernels: WorkerFactory, programs: WorkerFactory, warm = false): PoolWorker {
  const kernel = kernels();
  let program: PoolWorker | undefined = warm ? programs() : undefined;
  /** Kernel tasks running: a program handed ahead must not start beside one. */
  let kernelTasks = 0;
  return {
    api: {
      run(t: TaskRun, onProgress?: (fraction: number) => void, withdraw?: AbortSignal): Promise<TaskResult> {
        if (t.kernel === PROGRAM_KERNEL) {
          program ??= programs();
          return program.api.run(t, onProgress, withdraw);
        }
        kernelTasks++;
        return kernel.api.run(t, onProgress).finally(() => kernelTasks--);
      },
    },
    accepts: (t) => t.kernel === PROGRAM_KERNEL && kernelTasks === 0 && program?.accepts?.(t) === true,
    terminate() {
      kernel.terminate();
      program?.terminate();
    },
  };
}

/**
 * A WorkerPool (what VolunteerClient drives) whose slots route kernels and programs to
 * different workers. `run(task, label, { timeoutMs })` applies to both; a timed-out or
 * crashed slot is replaced with fresh workers of both kinds.
 */
export function createRoutingPool(opts: RoutingPoolOptions): WorkerPool {
  return new WorkerPool(() => routingWorker(opts.kernels, opts.programs, opts.warmPrograms), opts);
}

/** A one-thread WorkerPool seen as a single worker (to reuse a pool's worker plumbing). */
export function poolAsWorker(pool: WorkerPool): PoolWorker {
  return {
    api: { run: (t) => pool.run(t) },
    terminate: () => pool.terminate(),
  };
}

/** The memory limit of a program task unless its job says otherwise (the server's WASM_MEMORY_LIMIT_MB default). */
export const DEFAULT_PROGRAM_MEMORY_MB = 256;

/** What a program worker is started for: the limits it enforces. */
export type ProgramLimits = Pick<ProgramRunParams, "memoryLimitBytes">;

export interface DedicatedProgramWorkerOptions {
  /** Starts a sandboxed worker suited to this program task (e.g. its heap sized from the memory limit). */
  start(p: ProgramLimits): PoolWorker;
  /** Whether a worker started for `a` has the right limits for `b` (default: yes). */
  sameLimits?(a: ProgramLimits, b: ProgramLimits): boolean;
  /**
   * Start a worker with these limits now, before any program task: the first task whose
   * limits they fit finds it running. A program process takes ~150 ms to start on an idle
   * machine and most of a second while four start at once on two cores, which was most of
   * an iterative job's first round.
   */
  warm?: ProgramLimits;
}

/**
 * A program worker that is never shared between programs once it has run JavaScript: a JS
 * program runs in the worker's own realm (browser) and could leave something behind (a
 * patched built-in, a hooked message handler) for the next program, another consumer's,
 * to trip over. So a worker that ran JS program X runs X only; any other program, or a task
 * needing other limits, gets a fresh worker. WASM instances cannot touch their worker, so
 * WASM-only workers serve any WASM program. The code is sent only when the worker does not
 * already have it (the worker caches it by hash).
 */
export function dedicatedProgramWorker(opts: DedicatedProgramWorkerOptions): PoolWorker {
  let current: { worker: PoolWorker; started: ProgramLimits; jsHash?: string; lastHash?: string } | undefined =
    opts.warm ? { worker: opts.start(opts.warm), started: opts.warm } : undefined;
  const stop = () => {
    current?.worker.terminate();
    current = undefined;
  };
  return {
    api: {
      run(t: TaskRun, onProgress?: (fraction: number) => void, withdraw?: AbortSignal): Promise<TaskResult> {
        if (!isProgramParams(t.params)) {
          return Promise.reject(new Error("not a program task: its params need kind, hash and memoryLimitBytes"));
        }
        const p = t.params;
        if (current && ((current.jsHash !== undefined && current.jsHash !== p.hash) || !(opts.sameLimits?.(current.started, p) ?? true))) stop();
        // A worker that died waiting (a warm one whose process was killed) is replaced, not given the task.
        if (current?.worker.alive?.() === false) stop();
        current ??= { worker: opts.start(p), started: p };
        const needsCode = current.lastHash !== p.hash;
        if (needsCode && p.code === undefined) return Promise.reject(new Error(`program ${p.hash.slice(0, 12)} was sent without its code`));
        if (p.kind === "js") current.jsHash = p.hash;
        current.lastHash = p.hash;
        const params: ProgramRunParams = needsCode ? p : { ...p, code: undefined };
        return current.worker.api.run({ ...t, params }, onProgress, withdraw);
      },
    },
    // Only a task that run() would give to the same worker as it is: anything else replaces it, task and all.
    accepts(t) {
      if (!current || !isProgramParams(t.params) || current.worker.alive?.() === false) return false;
      const p = t.params;
      return current.lastHash === p.hash && (current.jsHash === undefined || current.jsHash === p.hash) &&
        (opts.sameLimits?.(current.started, p) ?? true) && current.worker.accepts?.(t) === true;
    },
    terminate: stop,
  };
}
