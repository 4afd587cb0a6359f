// The volunteer tab's pool once programs exist: built-in kernels in the app's own Web Workers
// (worker/browser/pool.ts), consumer programs in the sandbox iframe's workers
// (sandboxPool.ts), routed per slot so that `threads` bounds the two together.
import type { WorkerPool, PoolOptions } from "../runtime/pool";
import { MiB } from "../sandbox/abi";
import { createRoutingPool, DEFAULT_PROGRAM_MEMORY_MB, dedicatedProgramWorker, poolAsWorker } from "../sandbox/routingPool";
import { createBrowserPool } from "./pool";
import { sandboxIframeWorker, sharedSandboxFrame, type SandboxFrameOptions } from "./sandboxPool";

export interface BrowserVolunteerPoolOptions extends PoolOptions {
  sandbox?: SandboxFrameOptions;
}

/** Drop-in for createBrowserPool in VolunteerProvider: same WorkerPool, programs sandboxed. */
export function createBrowserVolunteerPool(opts: BrowserVolunteerPoolOptions): WorkerPool {
  const frame = sharedSandboxFrame(opts.sandbox);
  return createRoutingPool({
    threads: opts.threads,
    throttle: opts.throttle,
    // A one-thread pool is a kernel Web Worker with its error plumbing, reused as is.
    kernels: () => poolAsWorker(createBrowserPool({ threads: 1 })),
    warmPrograms: true,
    // A tab's worker applies each task's own limits (no `sameLimits`): the warm one is started
    // for the default limit only to say what it is for.
    programs: () => dedicatedProgramWorker({ start: () => sandboxIframeWorker(frame, { eager: true }), warm: { memoryLimitBytes: DEFAULT_PROGRAM_MEMORY_MB * MiB } }),
  });
}
