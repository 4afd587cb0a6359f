// Evaluates a compiled JS program inside QuickJS (an interpreter compiled to WebAssembly):
// the server's sandbox for a program's reduce and for reading its comparator. Nothing of the
// host is exposed: the program sees ECMAScript built-ins, the ABI's polyfills, and strings
// the host put in; it hands back JSON text. Memory is capped by QuickJS's allocator limit,
// time by an interrupt handler polled while the interpreter runs.

import { newQuickJSWASMModuleFromVariant, newVariant, RELEASE_SYNC, type QuickJSContext, type QuickJSHandle, type QuickJSRuntime, type QuickJSWASMModule } from "quickjs-emscripten";
import { formatMiB, MiB, PROGRAM_GLOBAL } from "./abi";
import { POLYFILL_SOURCE } from "./polyfills";
import { timeLimitError } from "../runtime/pool";
import { JSON_MAX_DEPTH, jsonTextTooDeep } from "../protocol/jsonBounds";

export interface QuickJsEval {
  script: string;
  /** Strings set as globals before the program is evaluated. */
  globals?: Record<string, string>;
  /** Bytes set as ArrayBuffer globals (copied in) before the program is evaluated. */
  buffers?: Record<string, Uint8Array>;
  /** Evaluated after the program; must give (or resolve to) a JSON text string. */
  expression: string;
  timeMs: number;
  memoryMb: number;
  /**
   * Keep the QuickJS module (its WebAssembly instance and memory) for the next evaluation
   * with the same memory limit: a long-lived thread's steps then cost a fresh runtime and
   * context, not a new module each (tens of milliseconds). A module whose evaluation failed
   * is never used again.
   */
  reuseModule?: boolean;
  /**
   * With reuseModule: evaluations with the same `keep` (and memory limit) may share one
   * runtime and context, the program evaluated once (an iterative job's steps: its id and its
   * program's hash). What the program leaves in its globals may then be seen by the next.
   */
  keep?: string;
}

const kept = new Map<number, Promise<QuickJSWASMModule>>();

function quickJsModule(memoryMb: number, reuse: boolean): Promise<QuickJSWASMModule> {
  const cached = reuse ? kept.get(memoryMb) : undefined;
  if (cached) return cached;
  const memoryBytes = memoryMb * MiB;
  const maximum = Math.max(256, Math.ceil((memoryBytes + QUICKJS_OVERHEAD_MB * MiB) / 65536));
  const wasmMemory = new WebAssembly.Memory({ initial: 256, maximum });
  const made = newQuickJSWASMModuleFromVariant(newVariant(RELEASE_SYNC, { wasmMemory }));
  if (reuse) kept.set(memoryMb, made);
  return made;
}

/**
 * Makes the module a long-lived thread's requests with this memory limit will reuse, and runs
 * a line of JS in it: instantiating QuickJS and compiling its functions (WebAssembly compiles
 * them at their first call) took ~40 ms of a first step.
 */
export async function warmQuickJs(memoryMb: number): Promise<void> {
  const mod = await quickJsModule(memoryMb, true);
  const rt = mod.newRuntime();
  const ctx = rt.newContext();
  try {
    const r = ctx.evalCode("const o = { a: [1, 2.5], b: 'c' }; JSON.stringify(JSON.parse(JSON.stringify(o)).a.map((x) => x * 2))");
    if (r.error) r.error.dispose();
    else r.value.dispose();
  } finally {
    ctx.dispose();
    rt.dispose();
  }
}

/** Longest error message kept of what a program threw (a 60 MB message went on to the job's row and the HTTP answer). */
const MAX_ERROR_CHARS = 2000;
const cut = (text: string) => (text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS)}… (${text.length} characters)` : text);

const NULL_THROWN = "a non-Error value was thrown: null";

function dumpError(ctx: QuickJSContext, handle: QuickJSHandle): string {
  const e = ctx.dump(handle) as unknown;
  if (e && typeof e === "object" && typeof (e as { message?: unknown }).message === "string") {
    const { name, message } = e as { name?: string; message: string };
    return cut(`${typeof name === "string" && name ? name : "Error"}: ${message}`);
  }
  let text: string;
  try {
    text = JSON.stringify(e) ?? String(e);
  } catch {
    text = "a value that cannot be shown";
  }
  return `a non-Error value was thrown: ${cut(text)}`;
}

/** Most JSON text a step or reduce may answer (a step's state is at most 16 MiB of it, its next 1 MiB). */
export const MAX_ANSWER_CHARS = 24 * MiB;

/**
 * The JSON text a program answered in QuickJS, parsed here in its sandbox thread, bounded in
 * size and nesting before it is: what is parsed is cloned to the coordinator's thread next. A
 * step that replaced its own `JSON.stringify` answered 60 MB of text, which took the server to
 * 1.5 GB and stalled its event loop for 4–5 s; one nested 5,000 deep could not be cloned back.
 */
export function parseAnswer(text: string, what: string, maxChars = MAX_ANSWER_CHARS): unknown {
  if (text.length > maxChars) throw new Error(`${what} answered ${formatMiB(text.length)} of JSON, more than the ${formatMiB(maxChars)} the server takes`);
  if (jsonTextTooDeep(text, JSON_MAX_DEPTH)) throw new Error(`${what} answered JSON nested deeper than ${JSON_MAX_DEPTH} levels`);
  return JSON.parse(text) as unknown;
}

/** Room for QuickJS's own code and data beside the program's heap, in the WASM memory. */
const QUICKJS_OVERHEAD_MB = 16;

/**
 * A QuickJS runtime and context with the ABI's polyfills and a program evaluated in it. Each
 * evaluation sets its own deadline; the interrupt handler reads it.
 */
interface Session {
  /** Set for a kept session (QuickJsEval.keep with the memory limit), else undefined. */
  key: string | undefined;
  module: QuickJSWASMModule;
  memoryMb: number;
  runtime: QuickJSRuntime;
  ctx: QuickJSContext;
  deadline: number;
  interrupted: boolean;
}

/** The session kept for the next evaluation with the same key: one at a time, per thread. */
let keptSession: Session | undefined;

function openSession(module: QuickJSWASMModule, memoryMb: number, key: string | undefined): Session {
  const runtime = module.newRuntime();
  runtime.setMemoryLimit(memoryMb * MiB);
  runtime.setMaxStackSize(1024 * 1024);
  // No deadline until an evaluation sets one.
  const s: Session = { key, module, memoryMb, runtime, ctx: undefined as unknown as QuickJSContext, deadline: Infinity, interrupted: false };
  runtime.setInterruptHandler(() => {
    if (Date.now() > s.deadline) s.interrupted = true;
    return s.interrupted;
  });
  s.ctx = runtime.newContext();
  return s;
}

function closeSession(s: Session) {
  if (keptSession === s) keptSession = undefined;
  try {
    s.ctx.dispose();
    s.runtime.dispose();
  } catch {
    kept.delete(s.memoryMb);
    // After an interrupt or out-of-memory QuickJS may refuse to free cleanly; the thread running us is about to end anyway.
  }
}

/**
 * Runs one evaluation in a fresh QuickJS runtime and context; returns the JSON text it
 * produced. QuickJS's allocator limit is approximate (this build cannot measure the blocks
 * it frees), so the module also gets a WebAssembly memory whose maximum is the limit plus a
 * little: whatever the accounting says, the interpreter cannot take more than that.
 *
 * With `keep` (and `reuseModule`), the runtime and context, with the program evaluated in
 * them, are kept after an evaluation that succeeded, and the next evaluation with the same
 * `keep` and memory limit runs in them without evaluating the polyfills and the program again
 * (~1.5 ms of a 2 ms step). Any failure, or an evaluation with another key, ends them.
 */
export async function evalInQuickJS(req: QuickJsEval): Promise<string> {
  const memoryBytes = req.memoryMb * MiB;
  const QuickJS = await quickJsModule(req.memoryMb, req.reuseModule === true);
  const key = req.keep !== undefined && req.reuseModule ? `${req.memoryMb}\n${req.keep}` : undefined;
  let s = key !== undefined && keptSession?.key === key && keptSession.module === QuickJS ? keptSession : undefined;
  const loaded = s !== undefined;
  // Never two sessions alive at once in this thread: the one kept for another key ends first.
  if (keptSession && keptSession !== s) closeSession(keptSession);
  s ??= openSession(QuickJS, req.memoryMb, key);
  const session = s;
  const { ctx, runtime } = session;
  session.deadline = Date.now() + req.timeMs;
  session.interrupted = false;
  const explain = (message: string): Error => {
    // After an interrupt or running out of memory the module's state is not to be trusted again.
    if (kept.get(req.memoryMb) && (session.interrupted || /out of memory|stack overflow/i.test(message))) kept.delete(req.memoryMb);
    if (session.interrupted) return timeLimitError(req.timeMs);
    if (/out of memory/i.test(message)) return new Error(`memory limit of ${formatMiB(memoryBytes)} exceeded`);
    // QuickJS throws null when it cannot even allocate its "out of memory" error; the memory
    // is freed again by the time this runs, so which of the two it was cannot be told.
    if (message === NULL_THROWN) return new Error(`null was thrown: by the program, or because it ran out of the ${formatMiB(memoryBytes)} of memory it may use`);
    if (/stack overflow/i.test(message)) return new Error(`${message} (stack overflow)`);
    return new Error(message);
  };
  const evaluate = (code: string, filename: string): QuickJSHandle => {
    const r = ctx.evalCode(code, filename);
    if (r.error) {
      const message = dumpError(ctx, r.error);
      r.error.dispose();
      throw explain(message);
    }
    return r.value;
  };
  let keep = false;
  try {
    for (const [name, value] of Object.entries(req.globals ?? {})) {
      const h = ctx.newString(value);
      ctx.setProp(ctx.global, name, h);
      h.dispose();
    }
    for (const [name, bytes] of Object.entries(req.buffers ?? {})) {
      const h = ctx.newArrayBuffer(bytes.slice().buffer);
      ctx.setProp(ctx.global, name, h);
      h.dispose();
    }
    if (!loaded) {
      evaluate(POLYFILL_SOURCE, "polyfills.js").dispose();
      try {
        evaluate(req.script, "program.js").dispose();
      } catch (e) {
        throw session.interrupted || /memory limit/.test((e as Error).message) ? e : new Error(`the program failed while loading: ${(e as Error).message}`);
      }
    }
    const result = evaluate(req.expression, "tabgrid.js");
    try {
      for (;;) {
        const state = ctx.getPromiseState(result);
        if (state.type === "fulfilled") {
          const text = ctx.dump(state.value) as unknown;
          if (!state.notAPromise) state.value.dispose();
          if (typeof text !== "string") throw new Error("the evaluation did not produce JSON text");
          keep = key !== undefined;
          return text;
        }
        if (state.type === "rejected") {
          const message = dumpError(ctx, state.error);
          state.error.dispose();
          throw explain(message);
        }
        const jobs = runtime.executePendingJobs();
        if (jobs.error) {
          const message = dumpError(ctx, jobs.error);
          jobs.error.dispose();
          throw explain(message);
        }
        if (jobs.value === 0) throw new Error("the program's promise never settled (QuickJS has no timers or I/O to wait for)");
      }
    } finally {
      result.dispose();
    }
  } finally {
    if (keep) keptSession = session;
    else closeSession(session);
  }
}

/** Evaluated in QuickJS: what a program returned, as the JSON text handed back (undefined as null). */
const AS_JSON_TEXT = `function (v) { var s = JSON.stringify(v === undefined ? null : v); return typeof s === "string" ? s : "null"; }`;

/** `reduce(outputs, { params })` of a compiled JS program, in QuickJS. */
export function reduceInQuickJS(req: { script: string; outputsJson: string; params: unknown; timeMs: number; memoryMb: number }): Promise<string> {
  return evalInQuickJS({
    script: req.script,
    globals: { __tabgridOutputs: req.outputsJson, __tabgridParams: JSON.stringify(req.params ?? null) },
    expression: `(function () {
      var ns = globalThis[${JSON.stringify(PROGRAM_GLOBAL)}];
      if (!ns || typeof ns.reduce !== "function") throw new Error("the program does not export reduce");
      var outputs = JSON.parse(globalThis.__tabgridOutputs), params = JSON.parse(globalThis.__tabgridParams);
      delete globalThis.__tabgridOutputs; delete globalThis.__tabgridParams;
      return Promise.resolve(ns.reduce(outputs, { params: params, progress: function () {} })).then(${AS_JSON_TEXT});
    })()`,
    timeMs: req.timeMs,
    memoryMb: req.memoryMb,
  });
}

/**
 * One round's step of an iterative JS program, in QuickJS: `step(merged, state, ctx)`, after
 * the program's own `reduce(outputs)` when `reduce` is set (then `merged` is left out). Gives
 * the JSON text of what step returned, checked by the caller (programStep.ts).
 */
export function stepInQuickJS(req: {
  script: string; merged: unknown; reduce?: unknown[]; state: unknown; ctx: Record<string, unknown>; timeMs: number; memoryMb: number; reuseModule?: boolean; keep?: string;
}): Promise<string> {
  return evalInQuickJS({
    script: req.script,
    globals: { __tabgridArgs: JSON.stringify({ merged: req.merged ?? null, reduce: req.reduce ?? null, state: req.state ?? null, ctx: req.ctx }) },
    expression: `(function () {
      var ns = globalThis[${JSON.stringify(PROGRAM_GLOBAL)}];
      if (!ns || typeof ns.step !== "function") throw new Error("the program does not export step");
      var a = JSON.parse(globalThis.__tabgridArgs);
      delete globalThis.__tabgridArgs;
      var ctx = a.ctx;
      ctx.progress = function () {};
      var merged = a.merged;
      if (a.reduce) {
        if (typeof ns.reduce !== "function") throw new Error("the program does not export reduce");
        merged = ns.reduce(a.reduce, { params: ctx.params, progress: function () {} });
      }
      return Promise.resolve(merged).then(function (m) { return ns.step(m === undefined ? null : m, a.state, ctx); }).then(${AS_JSON_TEXT});
    })()`,
    timeMs: req.timeMs,
    memoryMb: req.memoryMb,
    reuseModule: req.reuseModule,
    keep: req.keep,
  });
}

/**
 * One unit of a JS program, in QuickJS: `run(input, ctx)` as a volunteer runs it (ctx: the
 * job's params, the task's context fields and a no-op progress), for the server's spot-check
 * of a unit it cannot otherwise judge. `input`: a JSON value, a string (a line chunk) or
 * bytes (a block, a CSV shard), given to `run` as a Uint8Array. Gives the output's JSON text.
 */
export function runInQuickJS(req: {
  script: string; input: unknown; inputKind: "json" | "text" | "bytes"; params: unknown; context?: Record<string, unknown>;
  timeMs: number; memoryMb: number; reuseModule?: boolean;
}): Promise<string> {
  const bytes = req.inputKind === "bytes";
  const input = bytes ? "" : req.inputKind === "text" ? String(req.input) : JSON.stringify(req.input ?? null);
  return evalInQuickJS({
    script: req.script,
    globals: { __tabgridInput: input, __tabgridCtx: JSON.stringify({ ...(req.context ?? {}), params: req.params ?? null }) },
    ...(bytes ? { buffers: { __tabgridBytes: req.input as Uint8Array } } : {}),
    expression: `(function () {
      var ns = globalThis[${JSON.stringify(PROGRAM_GLOBAL)}];
      if (!ns || typeof ns.run !== "function") throw new Error("the program does not export a run function");
      var g = globalThis, kind = ${JSON.stringify(req.inputKind)};
      var input = kind === "bytes" ? new Uint8Array(g.__tabgridBytes) : kind === "text" ? g.__tabgridInput : JSON.parse(g.__tabgridInput);
      var ctx = JSON.parse(g.__tabgridCtx);
      delete g.__tabgridInput; delete g.__tabgridCtx; delete g.__tabgridBytes;
      ctx.progress = function () {};
      return Promise.resolve(ns.run(input, ctx)).then(${AS_JSON_TEXT});
    })()`,
    timeMs: req.timeMs,
    memoryMb: req.memoryMb,
    reuseModule: req.reuseModule,
  });
}

/** The JSON text of a compiled program's `comparator` export (evaluating its top level). */
export function comparatorInQuickJS(req: { script: string; timeMs: number; memoryMb: number }): Promise<string> {
  return evalInQuickJS({
    script: req.script,
    expression: `(function () {
      var c = globalThis[${JSON.stringify(PROGRAM_GLOBAL)}].comparator;
      var s = JSON.stringify(c === undefined ? null : c);
      return typeof s === "string" ? s : "null";
    })()`,
    timeMs: req.timeMs,
    memoryMb: req.memoryMb,
  });
}
