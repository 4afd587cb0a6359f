// Entry of a program process: the child process in which the headless volunteer runs
// consumers' programs (worker/node/programProcess.ts starts it, under a kernel memory limit,
// and kills it at a task's time limit). It is not loaded from a file: the parent bundles it
// and sends the bundle over the IPC channel, and it is evaluated under a neutral name, so no
// host file path exists in this process for a stack trace to show.
//
// JS programs run in a fresh node:vm context per task (worker/sandbox/vmHost.ts says what
// that does and does not protect), WASM programs as WebAssembly instances without imports.
//
// Messages: parent → child `{ type: "run", id, task }` (one may come while another runs: it
// waits for it); child → parent `{ type: "ready" }` once, then per task `{ type: "progress",
// id, fraction }`, `{ type: "done", id, result }` or `{ type: "fail", id, message }`.
import v8 from "node:v8";
import vm from "node:vm";
import type { TaskRun } from "../runtime/runTask";
import { isProgramParams, PROGRAM_KERNEL } from "../sandbox/abi";
import { runProgram } from "../sandbox/runProgram";
import { createVmJsHost, hostErrorMessage } from "../sandbox/vmHost";
import { cacheable, InputCache, inputSize, type CachedInput } from "../runtime/inputCache";
import { isolateStackCallback } from "./stackCallback";

/**
 * `inputKey`: the task's input is kept under it (worker/node/inputCache.ts); with `cached`,
 * the input was left out because this process has it.
 */
export type ChildRequest =
  | { type: "run"; id: number; task: TaskRun; inputKey?: string; cached?: boolean }
  /** The parent took the task back: drop it unless it has started. */
  | { type: "drop"; id: number };
export type ChildReply =
  | { type: "ready"; stackCallback: boolean }
  | { type: "progress"; id: number; fraction: number }
  | { type: "done"; id: number; result: { output: unknown; ms: number } }
  | { type: "fail"; id: number; message: string }
  | { type: "missing"; id: number };

const send = (m: ChildReply) => {
  try {
    process.send?.(m);
  } catch {
    // The parent is gone: "disconnect" ends this process.
  }
};

/**
 * A full garbage collection, to run between tasks. The kernel's limit counts memory the last
 * task left for the collector as much as live memory, and while V8 retries a refused
 * ArrayBuffer after collecting, some of its own allocations (compiler zones, GC work lists)
 * end the process instead: so a task must not start behind its predecessor's garbage. The
 * function comes from a throwaway context; programs' contexts get no `gc`.
 */
function collector(): () => void {
  // V8 frees dead ArrayBuffers' memory on a background thread after a collection; on busy
  // cores the next task then started with ~50 MB of its predecessor's buffers still counted
  // (CI saw "memory limit exceeded" for a task well under it). Freed within the collection,
  // they are gone when the next task starts. An unknown flag is ignored, not an error.
  v8.setFlagsFromString("--no-concurrent-array-buffer-sweeping");
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    v8.setFlagsFromString("--no-expose-gc");
    if (typeof gc === "function") return gc;
  } catch {
    // No collector: tasks start behind whatever their predecessors left.
  }
  return () => {};
}

const gc = collector();
const inUse = () => {
  const h = v8.getHeapStatistics();
  return h.used_heap_size + h.external_memory;
};
/**
 * Collect once tasks grew memory by a quarter of the task's limit (at least 16 MiB) since the
 * last collection: after every task that used much of its limit, every few hundred tiny ones.
 * Each task's growth is measured from its own start, because right after a collection the
 * freed ArrayBuffers are still counted until V8's background sweeper has released them.
 */
const collectAfter = (memoryLimitBytes: number) => Math.max(16 * 1024 * 1024, memoryLimitBytes / 4);
let grown = 0;
function collectIfGrown(since: number, memoryLimitBytes: number) {
  grown += Math.max(0, inUse() - since);
  if (grown < collectAfter(memoryLimitBytes)) return;
  gc();
  grown = 0;
}

const installStackFormatter = isolateStackCallback(require);
const jsHost = createVmJsHost({ installStackFormatter });
const inputs = new InputCache<CachedInput>();

// As in a browser worker, a promise the program leaves rejected is not fatal.
process.on("unhandledRejection", () => {});
// An exception in Node's own code that carries a program value (a promise whose prototype is a
// proxy throws from Node's rejection tracking) must never reach Node's handlers: they describe
// it with util.inspect, which hands a custom inspector the host's `inspect` function, hence the
// host realm. The process ends instead; the pool reports the task as failed.
process.setUncaughtExceptionCaptureCallback(() => process.exit(70));
// Without its parent this process has nothing to do.
process.on("disconnect", () => process.exit(0));

/**
 * Tasks that came while another ran (the pool hands the next one ahead, PoolWorker.accepts):
 * they run one at a time, in order, each the moment its predecessor ends.
 */
const waiting: Array<{ id: number; task: TaskRun }> = [];
let running = false;

function runNext() {
  const next = waiting.shift();
  if (!next) return;
  running = true;
  const { id, task } = next;
  const fail = (e: unknown) => send({ type: "fail", id, message: hostErrorMessage(e, "the program failed") });
  const ended = () => {
    running = false;
    runNext();
  };
  try {
    const params = task.params;
    if (task.kernel !== PROGRAM_KERNEL || !isProgramParams(params)) throw new Error("this process runs program tasks only");
    const onProgress = (fraction: number) => send({ type: "progress", id, fraction });
    const before = inUse();
    runProgram({ ...params, input: task.input }, { jsHost, onProgress })
      .then((result) => send({ type: "done", id, result }), fail)
      .finally(() => {
        collectIfGrown(before, params.memoryLimitBytes);
        ended();
      });
  } catch (e) {
    fail(e);
    ended();
  }
}

process.on("message", (m: ChildRequest) => {
  if (m?.type === "drop") {
    const i = waiting.findIndex((w) => w.id === m.id);
    if (i >= 0) waiting.splice(i, 1);
    return;
  }
  if (!m || m.type !== "run" || typeof m.id !== "number") return;
  const { id } = m;
  let task = m.task;
  // Inputs are looked up and kept as the requests come, in the order the parent's mirror assumed.
  if (typeof m.inputKey === "string") {
    if (m.cached) {
      const input = inputs.get(m.inputKey);
      if (input === undefined) return send({ type: "missing", id });
      task = { ...task, input };
    } else if (cacheable(task.input)) inputs.set(m.inputKey, task.input, inputSize(task.input));
  }
  waiting.push({ id, task });
  if (!running) runNext();
});

send({ type: "ready", stackCallback: installStackFormatter !== undefined });
