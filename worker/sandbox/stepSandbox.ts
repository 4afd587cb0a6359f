// Iterative programs step after every round, so a step must cost milliseconds: starting a
// sandbox thread and a QuickJS module for each (as a one-shot reduce does) costs hundreds.
// This keeps one thread (stepThread.ts) that runs steps one at a time with its QuickJS
// module loaded. A step that arrives while it is busy, or asks for another memory limit,
// runs in a one-shot thread instead (reduceOnServer.ts), so one slow step never holds up
// another job's. The thread is terminated at a step's time limit (if QuickJS's own interrupt
// failed), when it runs out of heap, and after a minute without steps.

import { Worker } from "node:worker_threads";
import { threadTarget } from "../node/threadTarget";
import { timeLimitError } from "../runtime/pool";
import { HEAP_OVERHEAD_MB, QUICKJS_GRACE_MS, runServerSandbox, STARTUP_LIMIT_MS, type StepRequest } from "./reduceOnServer";

export type { StepRequest };

const entry = new URL("./stepThread.ts", import.meta.url);
const IDLE_MS = 60_000;

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer?: NodeJS.Timeout;
}

class StepThread {
  private readonly worker: Worker;
  private readonly started: Promise<void>;
  private pending: Pending | undefined;
  private nextId = 1;
  dead = false;

  constructor(readonly memoryMb: number, private readonly onDead: () => void) {
    const target = threadTarget(entry);
    this.worker = new Worker(target.url, { workerData: target.workerData, execArgv: [], resourceLimits: { maxOldGenerationSizeMb: memoryMb + HEAP_OVERHEAD_MB } });
    this.worker.unref();
    this.started = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the step sandbox did not start in time")), STARTUP_LIMIT_MS);
      this.worker.once("message", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.started.catch(() => this.kill(new Error("the step sandbox did not start")));
    this.worker.on("message", (m: { id?: number; type: string; value?: unknown; message?: string }) => {
      const p = this.pending;
      if (!p || m.id === undefined) return;
      this.settle();
      if (m.type === "done") p.resolve(m.value);
      else p.reject(new Error(m.message ?? "the program failed"));
    });
    this.worker.on("error", (e: Error & { code?: string }) => {
      this.kill(e.code === "ERR_WORKER_OUT_OF_MEMORY" ? new Error(`memory limit of ${this.memoryMb} MiB exceeded`) : e);
    });
    this.worker.on("exit", () => this.kill(new Error("the step sandbox exited without an answer")));
  }

  get busy() {
    return this.pending !== undefined;
  }

  async run(req: StepRequest): Promise<unknown> {
    const result = new Promise<unknown>((resolve, reject) => (this.pending = { resolve, reject }));
    try {
      await this.started;
    } catch {
      // kill() has rejected `result` already.
    }
    if (this.dead) return result;
    const p = this.pending!;
    p.timer = setTimeout(() => this.kill(timeLimitError(req.timeMs)), req.timeMs + (req.kind === "wasm" ? 0 : QUICKJS_GRACE_MS));
    this.worker.postMessage({ id: this.nextId++, req });
    return result;
  }

  private settle() {
    clearTimeout(this.pending?.timer);
    this.pending = undefined;
  }

  kill(why: Error) {
    if (this.dead) return;
    this.dead = true;
    const p = this.pending;
    this.settle();
    p?.reject(why);
    void this.worker.terminate();
    this.onDead();
  }
}

let thread: StepThread | undefined;
let idle: NodeJS.Timeout | undefined;

/** Runs one step of an iterative JS program, sandboxed; resolves to what step returned. */
export async function runStep(req: StepRequest): Promise<unknown> {
  if (thread && (thread.busy || thread.memoryMb !== req.memoryMb)) return runServerSandbox({ op: "step", ...req });
  const t = (thread ??= new StepThread(req.memoryMb, () => {
    if (thread === t) thread = undefined;
  }));
  clearTimeout(idle);
  try {
    return await t.run(req);
  } finally {
    idle = setTimeout(() => t.kill(new Error("idle")), IDLE_MS);
    idle.unref();
  }
}

/** Ends the step thread (at shutdown and in tests). */
export function closeStepSandbox() {
  clearTimeout(idle);
  thread?.kill(new Error("the step sandbox was closed"));
}
