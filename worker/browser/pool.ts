import { releaseProxy, wrap } from "comlink";
import { WorkerPool, type PoolOptions, type PoolWorker } from "../runtime/pool";
import type { TaskResult, TaskRun } from "../runtime/runTask";
import type { KernelWorkerApi } from "./kernel.worker";

export type { PoolOptions, WorkerInfo, WorkerState } from "../runtime/pool";
export { WorkerPool } from "../runtime/pool";

function startWorker(): PoolWorker {
  // Exactly this form, so Turbopack sees the worker entry and bundles it.
  const w = new Worker(new URL("./kernel.worker.ts", import.meta.url), { type: "module" });
  const api = wrap<KernelWorkerApi>(w);
  // comlink never settles a call if the worker dies (script error, out of memory): do it here.
  const inFlight = new Set<(e: unknown) => void>();
  const fail = (e: unknown) => {
    for (const reject of inFlight) reject(e);
    inFlight.clear();
  };
  w.addEventListener("error", (ev) => {
    ev.preventDefault();
    fail(new Error(`Kernel worker failed: ${ev.message || "script error"}`));
  });
  w.addEventListener("messageerror", () => fail(new Error("Kernel worker sent an unreadable message")));
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
      w.terminate();
    },
  };
}

/** The volunteer tab's pool: `threads` Web Workers running built-in kernels. */
export function createBrowserPool(opts: PoolOptions): WorkerPool {
  return new WorkerPool(startWorker, opts);
}
