import { releaseProxy, wrap } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { Worker, type ResourceLimits } from "node:worker_threads";
import { WorkerPool, type PoolOptions, type PoolWorker } from "../runtime/pool";
import type { TaskResult, TaskRun } from "../runtime/runTask";
import type { ThreadApi } from "./thread";

export type { PoolOptions, WorkerInfo, WorkerState } from "../runtime/pool";
export { WorkerPool } from "../runtime/pool";

export interface NodePoolOptions extends PoolOptions {
  /** Per-thread V8 heap limits, so a runaway kernel kills its thread and not the volunteer. */
  resourceLimits?: ResourceLimits;
}

const threadUrl = new URL("./thread.ts", import.meta.url);
const loaderUrl = new URL("./thread-loader.mjs", import.meta.url);

/** Run from TypeScript sources (tsx, vitest), a thread goes through the tsx loader. */
function threadTarget(): { url: URL; workerData?: { entry: string } } {
  if (!threadUrl.pathname.endsWith(".ts")) return { url: threadUrl };
  return { url: loaderUrl, workerData: { entry: threadUrl.href } };
}

function startThread(resourceLimits: ResourceLimits | undefined): PoolWorker {
  const { url, workerData } = threadTarget();
  // execArgv is not inherited: the parent's may hold flags a thread refuses, or test-runner hooks.
  const w = new Worker(url, { workerData, execArgv: [], ...(resourceLimits ? { resourceLimits } : {}) });
  const api = wrap<ThreadApi>(nodeEndpoint(w));
  // comlink never settles a call whose thread died (uncaught error, heap limit): do it here.
  const inFlight = new Set<(e: unknown) => void>();
  const fail = (e: unknown) => {
    for (const reject of inFlight) reject(e);
    inFlight.clear();
  };
  w.on("error", (e) => fail(e));
  w.on("exit", (code) => fail(new Error(`Kernel thread exited with code ${code}`)));
  return {
    api: {
      run(t: TaskRun): Promise<TaskResult> {
        return new Promise<TaskResult>((resolve, reject) => {
          inFlight.add(reject);
          api.run(t).then(resolve, reject).finally(() => inFlight.delete(reject));
        });
      },
    },
    terminate() {
      api[releaseProxy]();
      void w.terminate();
    },
  };
}

/** The headless volunteer's pool: `threads` worker threads running built-in kernels. */
export function createNodePool(opts: NodePoolOptions): WorkerPool {
  return new WorkerPool(() => startThread(opts.resourceLimits), opts);
}
