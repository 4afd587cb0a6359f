// The coordinator merges a program job's unit outputs with the program's own reduce. That is
// consumer code running on the server, so it never runs unsandboxed: a JS reduce runs in
// QuickJS (memory limit, interrupt at the time limit, no host API), a WASM reduce as
// WebAssembly without imports (sandboxed by construction), both inside a one-shot worker
// thread with a V8 heap limit that is terminated if it outlives the time limit.

import { Worker } from "node:worker_threads";
import type { ProgramKind } from "./abi";
import { timeLimitError } from "../runtime/pool";
import { bundledEntry } from "../node/bundle";
import { FairSlots } from "./fairSlots";
import type { ServerMerge } from "../../server/services/jobs/mergeValues";

export type ServerSandboxRequest =
  /** `outputsJson`: the outputs as one JSON array's text (never parsed on the event loop). */
  | { op: "reduce"; kind: ProgramKind; code: string | Uint8Array; outputsJson: string; params: unknown; timeMs: number; memoryMb: number }
  | { op: "comparator"; script: string; timeMs: number; memoryMb: number }
  | ({ op: "step" } & StepRequest)
  /** A merge the server computes itself (server/services/jobs/mergeValues.ts) on outputs too big to parse on the event loop. */
  | { op: "merge"; how: ServerMerge; texts: string[]; timeMs: number; memoryMb: number };

/** One step of an iterative program (stepSandbox.ts): JS (answers a JSON value) or WASM (answers bytes). */
export type StepRequest = JsStepRequest | WasmStepRequest;

/** A JS step, in QuickJS: the merged outputs, or the outputs to reduce first. */
export interface JsStepRequest {
  kind?: "js";
  script: string;
  merged: unknown;
  reduce?: unknown[];
  state: unknown;
  ctx: Record<string, unknown>;
  timeMs: number;
  memoryMb: number;
  /**
   * The job and its program (e.g. "<job id>:<script hash>"): the kept step thread evaluates the
   * program once and calls step in that evaluation round after round (quickjs.ts, `keep`).
   */
  keep?: string;
}

/** A WASM step, as WebAssembly without imports: the framed input of worker/sandbox/wasmRounds.ts. */
export interface WasmStepRequest {
  kind: "wasm";
  /** The module's hash (compiled modules are cached by it) and bytes. */
  hash: string;
  code: Uint8Array;
  input: Uint8Array;
  timeMs: number;
  memoryMb: number;
}

export interface ReduceRequest {
  kind: ProgramKind;
  /** JS: the compiled script (compileJsProgram's `script`); WASM: the module's bytes. */
  code: string | Uint8Array;
  /** The units' outputs in unit order (JS: JSON values; WASM: `{ b64 }`)... */
  outputs?: unknown[];
  /** ...or their JSON texts as one JSON array, passed on as they are (a job's stored outputs). */
  outputsJson?: string;
  /** The job's parameters (`ctx.params`). */
  params: unknown;
  /** Wall-clock limit of the reduce itself. */
  timeMs: number;
  /** Memory limit (QuickJS allocator limit for JS; the WASM module's declared maximum must fit in it). */
  memoryMb: number;
}

export interface ReduceResult {
  /** JS: the JSON value reduce returned; WASM: `{ b64 }`. */
  result: unknown;
  ms: number;
}

const entry = new URL("./serverThread.ts", import.meta.url);
/** Starting the thread (bundling its code the first time, loading QuickJS) is not the program's time. */
export const STARTUP_LIMIT_MS = 30_000;
/** QuickJS interrupts itself at the limit; the thread is terminated only if that fails. */
export const QUICKJS_GRACE_MS = 2_000;
export const HEAP_OVERHEAD_MB = 64;

/** A sandbox thread's code; QuickJS loads its WebAssembly from its package's directory. */
export function sandboxThreadCode(entry: URL): Promise<string> {
  return bundledEntry(entry, { packages: ["quickjs-emscripten"] });
}

/**
 * Consumer code on the server runs at most this long at a time, whatever the job's own time
 * limit (which bounds a unit on a volunteer, up to an hour): a reduce or a step that spun for
 * the job's limit held a sandbox slot that long, and a few cheap jobs held them all.
 */
let maxMs = 30_000;
export const serverProgramMaxMs = () => maxMs;
/** Set from SERVER_PROGRAM_MAX_SECONDS when the server starts. */
export function setServerProgramMaxMs(ms: number) {
  if (!(ms > 0)) throw new RangeError("the server's program time cap must be positive");
  maxMs = ms;
}

const cancelled = () => new Error("stopped: the job was cancelled");

/** Who a run is for (runs are shared fairly between accounts), and a way to stop it. */
export interface SandboxRun {
  /** The account the run is for; runs with none share one turn. */
  owner?: string;
  /** Aborted, a run still waiting never starts and a running one's thread is terminated. */
  signal?: AbortSignal;
  /** Longest the run may wait for a slot; past it, it rejects with SandboxBusyError. */
  waitMs?: number;
}

/** A run that waited longer than its `waitMs` for one of the server's sandbox threads. */
export class SandboxBusyError extends Error {
  constructor(waitMs: number) {
    super(`the server's program sandboxes stayed busy for ${waitMs / 1000} s`);
    this.name = "SandboxBusyError";
  }
}

/** Runs one request in a fresh thread. Exported for compileJs (comparator) and tests. */
export function runServerSandbox(req: ServerSandboxRequest, run: SandboxRun = {}): Promise<unknown> {
  return runInThread(req, run).then((r) => r.value);
}

/**
 * One-shot threads running at once; more wait their turn (their time limit starts with their
 * thread). Each may hold a core and its memory limit for its whole time limit: without a cap,
 * concurrent submissions whose steps spin started one thread each (eight: 30 threads, load 7.7
 * on two cores; six allocating: RSS 307 MB to 1.2 GB). An account runs one at a time and the
 * accounts waiting take turns (fairSlots.ts); reading a comparator at upload (2 s at most)
 * has a slot of its own, so merges and steps never hold up uploads.
 */
const MAX_ONE_SHOT_THREADS = 2;
const oneShot = new FairSlots(MAX_ONE_SHOT_THREADS);
const comparators = new FairSlots(1);
/** Big merges the server computes: one at a time, beside the programs' reduces and steps. */
const merges = new FairSlots(1);

function runInThread(req: ServerSandboxRequest, run: SandboxRun = {}): Promise<{ value: unknown; ms: number }> {
  if (!(req.timeMs > 0) || !(req.memoryMb > 0)) return Promise.reject(new RangeError("timeMs and memoryMb must be positive"));
  const capped = { ...req, timeMs: Math.min(req.timeMs, maxMs) };
  const slots = req.op === "comparator" ? comparators : req.op === "merge" ? merges : oneShot;
  // Aborted (or out of time to wait) while waiting for a slot, the run gives up its place in line at once.
  const gaveUp = run.waitMs !== undefined ? AbortSignal.timeout(run.waitMs) : undefined;
  const wait = gaveUp && run.signal ? AbortSignal.any([run.signal, gaveUp]) : (gaveUp ?? run.signal);
  return slots.run(run.owner ?? "", () => (run.signal?.aborted ? Promise.reject(cancelled()) : spawn(capped, run.signal)), wait)
    .catch((e) => {
      if (run.signal?.aborted && e === run.signal.reason) throw cancelled();
      if (gaveUp?.aborted && e === gaveUp.reason) throw new SandboxBusyError(run.waitMs!);
      throw e;
    });
}

async function spawn(req: ServerSandboxRequest, signal?: AbortSignal): Promise<{ value: unknown; ms: number }> {
  const code = await sandboxThreadCode(entry);
  if (signal?.aborted) throw cancelled();
  return new Promise((resolve, reject) => {
    const w = new Worker(code, {
      eval: true, workerData: { request: req },
      execArgv: [],
      resourceLimits: { maxOldGenerationSizeMb: req.memoryMb + HEAP_OVERHEAD_MB },
    });
    let settled = false;
    const settle = (err: Error | null, value?: { value: unknown; ms: number }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", aborted);
      void w.terminate();
      if (err) reject(err);
      else resolve(value!);
    };
    let timer = setTimeout(() => settle(new Error("the sandbox thread did not start in time")), STARTUP_LIMIT_MS);
    const aborted = () => settle(cancelled());
    signal?.addEventListener("abort", aborted, { once: true });
    w.on("message", (m: { type: string; value?: unknown; ms?: number; message?: string }) => {
      if (m?.type === "started") {
        clearTimeout(timer);
        // QuickJS interrupts itself and gets a grace; WebAssembly (a WASM reduce or step) cannot.
        const wasm = (req.op === "reduce" || req.op === "step") && req.kind === "wasm";
        const limit = req.timeMs + (wasm ? 0 : QUICKJS_GRACE_MS);
        timer = setTimeout(() => settle(timeLimitError(req.timeMs)), limit);
      } else if (m?.type === "done") settle(null, { value: m.value, ms: m.ms ?? 0 });
      else if (m?.type === "fail") settle(new Error(m.message ?? "the program failed"));
    });
    w.on("error", (e: Error & { code?: string }) => {
      settle(e.code === "ERR_WORKER_OUT_OF_MEMORY" ? new Error(`memory limit of ${req.memoryMb} MiB exceeded`) : e);
    });
    w.on("messageerror", () => settle(new Error("the program's answer could not be received")));
    w.on("exit", (code) => settle(new Error(`the sandbox thread exited (code ${code}) without an answer`)));
  });
}

/**
 * Merges outputs with the program's reduce, sandboxed (see the top of this file). Rejects with
 * an Error whose message is fit for the consumer: the program's own exception, "time limit of
 * N s exceeded", "memory limit of N MiB exceeded", "the program does not export reduce".
 */
export async function reduceOutputs(req: ReduceRequest, run: SandboxRun = {}): Promise<ReduceResult> {
  const { outputs, outputsJson, ...rest } = req;
  const r = await runInThread({ op: "reduce", ...rest, outputsJson: outputsJson ?? JSON.stringify(outputs ?? []) }, run);
  return { result: r.value, ms: r.ms };
}

/**
 * A merge the server computes itself, in a sandbox thread: the JSON text of its result. For
 * outputs too big to parse and merge on the event loop (220 MB of them held it 8.6 s).
 */
export async function mergeInThread(how: ServerMerge, texts: string[], memoryMb: number, run: SandboxRun = {}): Promise<string> {
  const r = await runInThread({ op: "merge", how, texts, timeMs: serverProgramMaxMs(), memoryMb }, run);
  return r.value as string;
}
