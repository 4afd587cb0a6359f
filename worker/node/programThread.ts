// worker_threads entry for consumer programs on the headless volunteer (worker/node/pool.ts
// starts it with V8 heap limits sized from the task's memory limit). JS programs run in a
// fresh node:vm context per task (worker/sandbox/vmHost.ts says what that does and does not
// protect), WASM programs as WebAssembly instances without imports. Kept apart from
// thread.ts so built-in kernels never share a thread with a stranger's code.
import { expose } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { parentPort } from "node:worker_threads";
import type { TaskRun } from "../runtime/runTask";
import { isProgramParams, PROGRAM_KERNEL } from "../sandbox/abi";
import { runProgram } from "../sandbox/runProgram";
import { createVmJsHost } from "../sandbox/vmHost";

if (!parentPort) throw new Error("worker/node/programThread.ts must run in a worker thread");
const port = parentPort;
const jsHost = createVmJsHost();

// As in a browser worker, a promise the program leaves rejected is not fatal to the thread.
process.on("unhandledRejection", () => {});

const api = {
  run(t: TaskRun) {
    if (t.kernel !== PROGRAM_KERNEL || !isProgramParams(t.params)) throw new Error("this thread runs program tasks only");
    // Progress goes as a plain message beside comlink's (which ignores messages without an id).
    const onProgress = (fraction: number) => port.postMessage({ tabgridProgress: fraction });
    return runProgram({ ...t.params, input: t.input }, { jsHost, onProgress });
  },
};
export type ProgramThreadApi = typeof api;

expose(api, nodeEndpoint(port));
