// worker_threads entry for consumer programs on the headless volunteer, where program
// processes are not available (worker/node/pool.ts starts it with V8 heap limits sized from
// the task's memory limit; see programProcess.ts for the preferred way). JS programs run in a
// fresh node:vm context per task (worker/sandbox/vmHost.ts says what that does and does not
// protect), with ArrayBuffer memory counted by wrapping, WASM programs as WebAssembly
// instances without imports. Kept apart from thread.ts so built-in kernels never share a
// thread with a stranger's code.
import { expose } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { createRequire } from "node:module";
import { parentPort } from "node:worker_threads";
import type { TaskRun } from "../runtime/runTask";
import { isProgramParams, PROGRAM_KERNEL } from "../sandbox/abi";
import { runProgram } from "../sandbox/runProgram";
import { createVmJsHost } from "../sandbox/vmHost";
import { isolateStackCallback } from "./stackCallback";

if (!parentPort) throw new Error("worker/node/programThread.ts must run in a worker thread");
const port = parentPort;
const jsHost = createVmJsHost({ countArrayBuffers: true, installStackFormatter: isolateStackCallback(createRequire(import.meta.url)) });

// As in a browser worker, a promise the program leaves rejected is not fatal to the thread.
process.on("unhandledRejection", () => {});
// An exception in Node's own code that carries a program value (a promise whose prototype is a
// proxy throws from Node's rejection tracking) must never reach Node's handlers: a worker's
// serializes it with util.inspect, which hands a custom inspector the host's `inspect`
// function, hence the host realm (`constructor("return process")()` then ran on this thread).
// The thread ends instead; the pool reports the task as failed.
process.setUncaughtExceptionCaptureCallback(() => process.exit(70));

// Should Node's own formatter still be in place (no internal binding, see stackCallback.ts), a
// program that makes it overflow receives a host-realm RangeError: its stack then shows the
// program's frames only, like the program's own errors, not this thread's files.
// Assignments are ignored rather than refused: nothing here needs another formatter.
const hostFormatter = (error: unknown, sites: NodeJS.CallSite[]): string => {
  let head = "Error";
  try {
    const e = error as { name?: unknown; message?: unknown };
    head = `${typeof e.name === "string" ? e.name : "Error"}: ${typeof e.message === "string" ? e.message : ""}`;
  } catch {
    // A header is all we lose.
  }
  let frames = "";
  try {
    for (const s of sites) if (s.getFileName() === "program.js") frames += `\n    at ${String(s)}`;
  } catch {
    // As above.
  }
  return head + frames;
};
Object.defineProperty(Error, "prepareStackTrace", { get: () => hostFormatter, set: () => {}, configurable: false, enumerable: false });

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
