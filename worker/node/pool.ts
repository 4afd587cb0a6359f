import { releaseProxy, wrap, type Remote } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { Worker, type ResourceLimits } from "node:worker_threads";
import { WorkerPool, type PoolOptions, type PoolWorker } from "../runtime/pool";
import type { TaskResult, TaskRun } from "../runtime/runTask";
import { formatMiB, MiB, type ProgramRunParams } from "../sandbox/abi";
import { createRoutingPool, DEFAULT_PROGRAM_MEMORY_MB, dedicatedProgramWorker, type ProgramLimits } from "../sandbox/routingPool";
import { scrubError } from "./hostPaths";
import { findMemoryLimiter, startProgramProcess, type MemoryLimiter } from "./programProcess";
import type { BatchAnswer } from "./thread";
import { bundledEntry, type BundleOptions } from "./bundle";

export type { PoolOptions, WorkerInfo, WorkerState } from "../runtime/pool";
export { WorkerPool } from "../runtime/pool";

/** Where consumer programs run: child processes under a kernel memory limit, or worker threads. */
export type ProgramIsolation = "process" | "thread";

export interface NodePoolOptions extends PoolOptions {
  /** Per-thread V8 heap limits of kernel threads, so a runaway kernel kills its thread and not the volunteer. */
  resourceLimits?: ResourceLimits;
  /**
   * Where programs run (default: "process" where the kernel can limit a process's memory,
   * i.e. on Linux, else "thread"). "process" where that is not possible throws.
   */
  programIsolation?: ProgramIsolation;
  /**
   * Start each slot's program process (or thread) with the slot, with the default memory limit
   * (DEFAULT_PROGRAM_MEMORY_MB), rather than for its first program task. A dedicated volunteer
   * pays an idle process's memory for a first task that does not wait for one to start.
   */
  warmPrograms?: boolean;
}

export { DEFAULT_PROGRAM_MEMORY_MB };

const kernelEntry = new URL("./thread.ts", import.meta.url);
const programEntry = new URL("./programThread.ts", import.meta.url);

/**
 * V8 heap a program thread or process gets beyond the program's own limit: the runtime's
 * modules and the vm context's built-ins (a few MiB) with room to spare, so that "memory limit
 * of 64 MiB" means the program's data and not the runtime's.
 */
export const PROGRAM_HEAP_OVERHEAD_MB = 32;

export function programHeapMb(memoryLimitBytes: number): number {
  return Math.ceil(memoryLimitBytes / MiB) + PROGRAM_HEAP_OVERHEAD_MB;
}

/** thread.ts's API; programThread.ts has run only, and its callers never ask for runMany. */
type RunApi = { run(t: TaskRun): Promise<TaskResult>; runMany(ts: TaskRun[]): Promise<BatchAnswer[]> };

/** A kernel thread that also takes tasks in batches (see BatchAnswer). */
export interface BatchWorker extends PoolWorker {
  runMany(ts: TaskRun[]): Promise<BatchAnswer[]>;
}

function startThread(entry: URL, resourceLimits: ResourceLimits | undefined, what: string, limitText?: string, execArgv: string[] = [], bundle: BundleOptions = {}): BatchWorker {
  const inFlight = new Set<(e: unknown) => void>();
  let progress: ((fraction: number) => void) | undefined;
  let terminated = false;
  // comlink never settles a call whose thread died (uncaught error, heap limit): do it here.
  const fail = (e: unknown) => {
    for (const reject of inFlight) reject(e);
    inFlight.clear();
  };
  // The thread starts once its code is bundled (at once after the first thread of this entry).
  const thread = bundledEntry(entry, bundle).then((code) => {
    // execArgv is not inherited: the parent's may hold flags a thread refuses, or test-runner hooks.
    const w = new Worker(code, { eval: true, execArgv, ...(resourceLimits ? { resourceLimits } : {}) });
    w.on("message", (m: { tabgridProgress?: unknown }) => {
      if (typeof m?.tabgridProgress === "number") progress?.(m.tabgridProgress);
    });
    w.on("error", (e: Error & { code?: string }) => {
      if (e.code === "ERR_WORKER_OUT_OF_MEMORY") fail(new Error(limitText ? `memory limit of ${limitText} exceeded` : `memory limit exceeded: ${e.message}`));
      else fail(e);
    });
    w.on("exit", (code) => fail(new Error(`${what} thread exited with code ${code}`)));
    if (terminated) void w.terminate();
    return { w, api: wrap<RunApi>(nodeEndpoint(w)) };
  });
  thread.catch(() => undefined);
  const settled = <T>(call: (api: Remote<RunApi>) => Promise<T>, after?: () => void) =>
    new Promise<T>((resolve, reject) => {
      inFlight.add(reject);
      thread
        .then((t) => call(t.api))
        .then(resolve, reject)
        .finally(() => {
          inFlight.delete(reject);
          after?.();
        });
    });
  return {
    api: {
      run(t: TaskRun, onProgress?: (fraction: number) => void): Promise<TaskResult> {
        progress = onProgress;
        return settled((api) => api.run(t), () => (progress = undefined));
      },
    },
    // Kernel threads only (thread.ts); a program thread has no runMany.
    runMany: (ts: TaskRun[]) => settled((api) => api.runMany(ts)),
    terminate() {
      terminated = true;
      void thread.then(({ w, api }) => {
        api[releaseProxy]();
        void w.terminate();
      }, () => undefined);
    },
  };
}

/** A thread for built-in kernels; it takes batches too (runMany). */
export function startKernelThread(resourceLimits?: ResourceLimits): BatchWorker {
  return startThread(kernelEntry, resourceLimits, "Kernel");
}

/**
 * A thread for consumer programs, its V8 heap sized from the program's memory limit: the
 * fallback where program processes are not available (ArrayBuffer memory is then counted by
 * wrapping the allocating constructors, which a program can get around).
 */
export function startProgramThread(memoryLimitBytes: number): PoolWorker {
  // --expose-internals: the isolate's stack-trace callback (stackCallback.ts).
  return startThread(programEntry, { maxOldGenerationSizeMb: programHeapMb(memoryLimitBytes) }, "Program", formatMiB(memoryLimitBytes), ["--expose-internals", "--no-warnings"], { internals: true });
}

/** A child process for consumer programs, its memory limited by the kernel (programProcess.ts). */
export function startProgramProcessFor(memoryLimitBytes: number, limiter: MemoryLimiter): PoolWorker {
  return startProgramProcess({ memoryLimitBytes, heapMb: programHeapMb(memoryLimitBytes), limiter });
}

/** Failures of a program worker leave the volunteer without host paths in their messages. */
function scrubbed(worker: PoolWorker): PoolWorker {
  return {
    api: { run: (t, onProgress, withdraw) => worker.api.run(t, onProgress, withdraw).catch((e: unknown) => Promise.reject(scrubError(e))) },
    terminate: () => worker.terminate(),
    ...(worker.alive ? { alive: () => worker.alive!() } : {}),
    ...(worker.accepts ? { accepts: (t: TaskRun) => worker.accepts!(t) } : {}),
  };
}

/** How this machine runs programs: what `createNodePool` picks for `programIsolation`. */
export function programSandbox(isolation?: ProgramIsolation): { isolation: ProgramIsolation; limiter?: MemoryLimiter; description: string } {
  const limiter = isolation === "thread" ? undefined : findMemoryLimiter();
  if (isolation === "process" && !limiter) {
    throw new Error("program processes need Linux 4.7 or newer (a memory limit the kernel enforces on mappings) with prlimit or /bin/sh");
  }
  if (limiter) {
    return {
      isolation: "process", limiter,
      description: `programs run in child processes whose memory the kernel limits (RLIMIT_DATA, set with ${limiter.kind === "prlimit" ? "prlimit" : "ulimit -d"})`,
    };
  }
  return {
    isolation: "thread",
    description: "programs run in worker threads: their JS heap is limited, their ArrayBuffer memory only counted as well as wrapping the constructors allows (no per-process memory limit here)",
  };
}

/**
 * The headless volunteer's pool: `threads` slots, each running built-in kernels on a kernel
 * thread and consumer programs (`kernel: "program"`, params as ProgramRunParams) on a
 * separate program process (or thread, see `programSandbox`), started when first needed and
 * restarted when a task needs a different memory limit or a different JS program
 * (worker/sandbox/routingPool.ts). Give `run` a `timeoutMs` to bound a task's wall-clock time.
 */
export function createNodePool(opts: NodePoolOptions): WorkerPool {
  const { limiter } = programSandbox(opts.programIsolation);
  return createRoutingPool({
    threads: opts.threads,
    throttle: opts.throttle,
    kernels: () => startKernelThread(opts.resourceLimits),
    warmPrograms: opts.warmPrograms,
    programs: () =>
      dedicatedProgramWorker({
        start: (p: ProgramLimits) => scrubbed(limiter ? startProgramProcessFor(p.memoryLimitBytes, limiter) : startProgramThread(p.memoryLimitBytes)),
        sameLimits: (a, b) => a.memoryLimitBytes === b.memoryLimitBytes,
        ...(opts.warmPrograms ? { warm: { memoryLimitBytes: DEFAULT_PROGRAM_MEMORY_MB * MiB } } : {}),
      }),
  });
}

