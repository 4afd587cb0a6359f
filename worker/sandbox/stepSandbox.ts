// Iterative programs step after every round, so a step must cost milliseconds: starting a
// sandbox thread and a QuickJS module for each (as a one-shot reduce does) costs hundreds.
// This keeps one thread (stepThread.ts) that runs steps one at a time with its QuickJS
// module loaded. A step that arrives while it is busy, or asks for another memory limit,
// runs in a one-shot thread instead (reduceOnServer.ts), so one slow step never holds up
// another job's. The thread is terminated at a step's time limit (if QuickJS's own interrupt
// failed), when it runs out of heap, and after a minute without steps.
//
// A second kept thread, at the lowest CPU priority, recomputes units of iterative programs
// for the server's after-the-fact spot-checks (server/coordinator/programAudits.ts): audits
// queue for it one at a time, paced to a share of a core. The lowest priority alone did not
// keep them from slowing rounds: measured on 2 cores, an audit thread busy all the time still
// added ~5 ms to a training round's median and ~15 ms to its p99.

import { Worker } from "node:worker_threads";
import { timeLimitError } from "../runtime/pool";
import { HEAP_OVERHEAD_MB, QUICKJS_GRACE_MS, runServerSandbox, sandboxThreadCode, serverProgramMaxMs, STARTUP_LIMIT_MS, type SandboxRun, type StepRequest } from "./reduceOnServer";
import type { ProgramKind } from "./abi";

export type { StepRequest };

/** One unit of a program, recomputed on the server (JS in QuickJS, WASM as WebAssembly without imports). */
export interface UnitRequest {
  op: "run";
  kind: ProgramKind;
  hash: string;
  /** JS: the compiled script; WASM: the module's bytes. */
  code: string | Uint8Array;
  input: unknown;
  inputKind: "json" | "text" | "bytes";
  params: unknown;
  context?: Record<string, unknown>;
  timeMs: number;
  memoryMb: number;
}

/** What the kept threads run: a step (no `op`, as before) or a unit. */
export type KeptRequest = StepRequest | UnitRequest;

const entry = new URL("./stepThread.ts", import.meta.url);
const IDLE_MS = 60_000;

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer?: NodeJS.Timeout;
}

class KeptThread {
  private worker: Worker | undefined;
  private readonly started: Promise<void>;
  private pending: Pending | undefined;
  private nextId = 1;
  dead = false;

  constructor(readonly memoryMb: number, private readonly onDead: () => void, private readonly nice = 0) {
    this.started = sandboxThreadCode(entry).then((code) => this.start(code));
    this.started.catch(() => this.kill(new Error("the step sandbox did not start")));
  }

  private start(code: string): Promise<void> {
    if (this.dead) return Promise.reject(new Error("the step sandbox was ended"));
    const w = (this.worker = new Worker(code, {
      eval: true, workerData: { nice: this.nice, memoryMb: this.memoryMb }, execArgv: [], resourceLimits: { maxOldGenerationSizeMb: this.memoryMb + HEAP_OVERHEAD_MB },
    }));
    w.unref();
    w.on("message", (m: { id?: number; type: string; value?: unknown; message?: string }) => {
      const p = this.pending;
      if (!p || m.id === undefined) return;
      this.settle();
      if (m.type === "done") p.resolve(m.value);
      else p.reject(new Error(m.message ?? "the program failed"));
    });
    w.on("error", (e: Error & { code?: string }) => {
      this.kill(e.code === "ERR_WORKER_OUT_OF_MEMORY" ? new Error(`memory limit of ${this.memoryMb} MiB exceeded`) : e);
    });
    // An answer that cannot be cloned here fails its request now, not at the time limit.
    w.on("messageerror", () => this.kill(new Error("the program's answer could not be received")));
    w.on("exit", () => this.kill(new Error("the step sandbox exited without an answer")));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the step sandbox did not start in time")), STARTUP_LIMIT_MS);
      w.once("message", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  get busy() {
    return this.pending !== undefined;
  }

  async run(req: KeptRequest, signal?: AbortSignal): Promise<unknown> {
    const result = new Promise<unknown>((resolve, reject) => (this.pending = { resolve, reject }));
    // A cancelled job's step ends the thread: QuickJS cannot be interrupted from outside.
    const stop = () => this.kill(new Error("stopped: the job was cancelled"));
    if (signal) {
      if (signal.aborted) stop();
      signal.addEventListener("abort", stop, { once: true });
      void result.catch(() => undefined).finally(() => signal.removeEventListener("abort", stop));
    }
    try {
      await this.started;
    } catch {
      // kill() has rejected `result` already.
    }
    if (this.dead) return result;
    const p = this.pending!;
    p.timer = setTimeout(() => this.kill(timeLimitError(req.timeMs)), req.timeMs + (req.kind === "wasm" ? 0 : QUICKJS_GRACE_MS));
    this.worker!.postMessage({ id: this.nextId++, req });
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
    void this.worker?.terminate();
    this.onDead();
  }
}

/** A kept thread, started on demand and ended after a minute unused. */
class Slot {
  thread: KeptThread | undefined;
  private idle: NodeJS.Timeout | undefined;

  constructor(private readonly nice: number) {}

  async run(req: KeptRequest, signal?: AbortSignal): Promise<unknown> {
    if (this.thread && this.thread.memoryMb !== req.memoryMb) this.thread.kill(new Error("another memory limit"));
    const t = this.thread ?? this.open(req.memoryMb);
    clearTimeout(this.idle);
    try {
      return await t.run(req, signal);
    } finally {
      this.idleLater(t);
    }
  }

  /** Starts a thread for this limit now, unless one runs; unused, it ends after the idle time. */
  warm(memoryMb: number) {
    if (this.thread) return;
    this.idleLater(this.open(memoryMb));
  }

  private open(memoryMb: number): KeptThread {
    const t: KeptThread = (this.thread = new KeptThread(memoryMb, () => {
      if (this.thread === t) this.thread = undefined;
    }, this.nice));
    return t;
  }

  /** Ends the thread after IDLE_MS unless a run comes first. */
  private idleLater(t: KeptThread) {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => t.kill(new Error("idle")), IDLE_MS);
    this.idle.unref();
  }

  close(why: string) {
    clearTimeout(this.idle);
    this.thread?.kill(new Error(why));
  }
}

const steps = new Slot(0);
/** Audits yield to everything else on the machine (Linux nice 19, for that thread alone). */
const audits = new Slot(19);
let auditQueue: Promise<unknown> = Promise.resolve();

/** Runs one step of an iterative JS program, sandboxed; resolves to what step returned. */
export async function runStep(req: StepRequest, run: SandboxRun = {}): Promise<unknown> {
  req = { ...req, timeMs: Math.min(req.timeMs, serverProgramMaxMs()) };
  const t = steps.thread;
  if (t && (t.busy || t.memoryMb !== req.memoryMb)) return runServerSandbox({ op: "step", ...req }, run);
  return steps.run(req, run.signal);
}

/**
 * Starts the step thread ahead of a job's first step, if none runs. Starting it (a thread,
 * QuickJS) costs ~0.3 s: a submission that will step warms it while it reads and shards its input.
 */
export function warmStep(memoryMb: number) {
  steps.warm(memoryMb);
}

/** The memory limit of the kept step thread, if one runs (started or starting). */
export function keptStepThread(): number | undefined {
  return steps.thread?.memoryMb;
}

/**
 * Recomputes one unit of a program in the audit thread, after the audits queued before it;
 * resolves to its output (JS: the JSON value; WASM: `{ b64 }`), or rejects with why not.
 * `share` (0..1] paces the thread: after an audit that took t ms, the next waits t × (1/share − 1),
 * so audits take at most that share of a core's time.
 */
export function runUnitOnServer(req: UnitRequest, share = 1): Promise<unknown> {
  const started = auditQueue.then(() => performance.now());
  const run = started.then(() => audits.run(req));
  auditQueue = run.catch(() => undefined).then(async () => {
    const rest = share < 1 ? (performance.now() - (await started)) * (1 / share - 1) : 0;
    if (rest > 0) await new Promise((resolve) => setTimeout(resolve, rest).unref());
  });
  return run;
}

/** Ends the kept threads (at shutdown and in tests). */
export function closeStepSandbox() {
  steps.close("the step sandbox was closed");
  audits.close("the audit sandbox was closed");
}
