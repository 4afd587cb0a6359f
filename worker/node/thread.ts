// worker_threads entry of the headless volunteer: the same API as the browser's Web Worker.
import { expose } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { parentPort } from "node:worker_threads";
import { runTask, type TaskRun } from "../runtime/runTask";

const api = {
  run(t: TaskRun) {
    return runTask(t);
  },
};
export type ThreadApi = typeof api;

if (!parentPort) throw new Error("worker/node/thread.ts must run in a worker thread");
expose(api, nodeEndpoint(parentPort));
