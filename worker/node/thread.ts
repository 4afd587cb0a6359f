// worker_threads entry of the headless volunteer: the same API as the browser's Web Worker.
import { expose } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { parentPort } from "node:worker_threads";
import { runTask, type TaskResult, type TaskRun } from "../runtime/runTask";

/** One task's answer in a batch: its result, or why it failed. */
export type BatchAnswer = { result: TaskResult } | { error: string };

const api = {
  run(t: TaskRun) {
    return runTask(t);
  },
  /**
   * Several tasks in one message, one after the other (the server's spot-checks). Waking a
   * sleeping thread costs ~40 µs of CPU per message; a batch pays it once.
   */
  async runMany(ts: TaskRun[]): Promise<BatchAnswer[]> {
    const out: BatchAnswer[] = [];
    for (const t of ts) {
      try {
        out.push({ result: await runTask(t) });
      } catch (e) {
        out.push({ error: e instanceof Error ? e.message : String(e) });
      }
    }
    return out;
  },
};
export type ThreadApi = typeof api;

if (!parentPort) throw new Error("worker/node/thread.ts must run in a worker thread");
expose(api, nodeEndpoint(parentPort));
