// Web Worker entry: one kernel run at a time, driven over comlink by worker/browser/pool.ts.
import { expose } from "comlink";
import { runTask, type TaskRun } from "../runtime/runTask";

const api = {
  run(t: TaskRun) {
    return runTask(t);
  },
};
export type KernelWorkerApi = typeof api;

expose(api);
