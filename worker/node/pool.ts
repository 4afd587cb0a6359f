import { releaseProxy, wrap } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { Worker, type ResourceLimits } from "node:worker_threads";
import { WorkerPool, type PoolOptions, type PoolWorker } from "../runtime/pool";
import type { TaskResult, TaskRun } from "../runtime/runTask";
import { formatMiB, MiB, type ProgramRunParams } from "../sandbox/abi";
import { createRoutingPool, dedicatedProgramWorker } from "../sandbox/routingPool";
import { threadTarget } from "./threadTarget";

export type { PoolOptions, WorkerInfo, WorkerState } from "../runtime/pool";
export { WorkerPool } from "../runtime/pool";

export interface NodePoolOptions extends PoolOptions {
  /** Per-thread V8 heap limits of kernel threads, so a runaway kernel kills its thread and not the volunteer. */
  resourceLimits?: ResourceLimits;
}

const kernelEntry = new URL("./thread.ts", import.meta.url);
const programEntry = new URL("./programThread.ts", import.meta.url);

/**
 * V8 heap a program thread gets beyond the program's own limit: the thread's modules and
 * the vm context's built-ins (a few MiB) with room to spare, so that "memory limit of 64 MiB"
 * means the program's data and not the runtime's.
 */
export const PROGRAM_HEAP_OVERHEAD_MB = 32;

export function programHeapMb(memoryLimitBytes: number): number {
  return Math.ceil(memoryLimitBytes / MiB) + PROGRAM_HEAP_OVERHEAD_MB;
}

type RunApi = { run(t: TaskRun): Promise<TaskResult> };

function startThread(entry: URL, resourceLimits: ResourceLimits | undefined, what: string, limitText?: string): PoolWorker {
  const target = threadTarget(entry);
  // execArgv is not inherited: the parent's may hold flags a thread refuses, or test-runner hooks.
  const w = new Worker(target.url, { workerData: target.workerData, execArgv: [], ...(resourceLimits ? { resourceLimits } : {}) });
  const api = wrap<RunApi>(nodeEndpoint(w));
  // comlink never settles a call whose thread died (uncaught error, heap limit): do it here.
  const inFlight = new Set<(e: unknown) => void>();
  let progress: ((fraction: number) => void) | undefined;
  const fail = (e: unknown) => {
    for (const reject of inFlight) reject(e);
    inFlight.clear();
  };
  w.on("message", (m: { tabgridProgress?: unknown }) => {
    if (typeof m?.tabgridProgress === "number") progress?.(m.tabgridProgress);
  });
  w.on("error", (e: Error & { code?: string }) => {
    if (e.code === "ERR_WORKER_OUT_OF_MEMORY") fail(new Error(`memory limit${limitText ? ` of ${limitText}` : ""} exceeded: ${e.message}`));
    else fail(e);
  });
  w.on("exit", (code) => fail(new Error(`${what} thread exited with code ${code}`)));
  return {
    api: {
      run(t: TaskRun, onProgress?: (fraction: number) => void): Promise<TaskResult> {
        progress = onProgress;
        return new Promise<TaskResult>((resolve, reject) => {
          inFlight.add(reject);
          api
            .run(t)
            .then(resolve, reject)
            .finally(() => {
              inFlight.delete(reject);
              progress = undefined;
            });
        });
      },
    },
    terminate() {
      api[releaseProxy]();
      void w.terminate();
    },
  };
}

/** A thread for built-in kernels. */
export function startKernelThread(resourceLimits?: ResourceLimits): PoolWorker {
  return startThread(kernelEntry, resourceLimits, "Kernel");
}

/** A thread for consumer programs, its V8 heap sized from the program's memory limit. */
export function startProgramThread(memoryLimitBytes: number): PoolWorker {
  return startThread(programEntry, { maxOldGenerationSizeMb: programHeapMb(memoryLimitBytes) }, "Program", formatMiB(memoryLimitBytes));
}

/**
 * The headless volunteer's pool: `threads` slots, each running built-in kernels on a kernel
 * thread and consumer programs (`kernel: "program"`, params as ProgramRunParams) on a
 * separate program thread, started when first needed and restarted when a task needs a
 * different memory limit or a different JS program (worker/sandbox/routingPool.ts). Give
 * `run` a `timeoutMs` to bound a task's wall-clock time.
 */
export function createNodePool(opts: NodePoolOptions): WorkerPool {
  return createRoutingPool({
    threads: opts.threads,
    throttle: opts.throttle,
    kernels: () => startKernelThread(opts.resourceLimits),
    programs: () =>
      dedicatedProgramWorker({
        start: (p: ProgramRunParams) => startProgramThread(p.memoryLimitBytes),
        sameLimits: (a, b) => programHeapMb(a.memoryLimitBytes) === programHeapMb(b.memoryLimitBytes),
      }),
  });
}
