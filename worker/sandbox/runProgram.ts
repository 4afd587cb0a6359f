// Runs one unit of a consumer's program INSIDE a sandboxed worker: a Web Worker in the
// sandbox iframe (browser) or a worker thread (Node). The same code serves both; only how a
// JS script is evaluated differs, and that is the JsHost the caller passes in (a same-realm
// importScripts in the browser worker, a fresh node:vm context in a Node thread).
// No imports of Node or DOM APIs here: this file is bundled into the browser runner.

import { decodeBase64, encodeBase64 } from "../kernels/base64";
import { ALLOCATION_FAILURE, inputKindOf, memoryLimitMessage, WASM_PAGE, type B64Output, type InputKind, type ProgramKind, type ProgramRequest } from "./abi";
import { checkWasmAbi, readWasmInfo } from "./wasmInfo";
import { bytesOf, frameRoundInput } from "./wasmRounds";

/** Evaluates a compiled JS program (compileJsProgram's script) and calls one of its exports. */
export interface JsHost {
  /**
   * Evaluates `script` afresh (or reuses the evaluation kept for the same `keep`), calls
   * `fn(arg, ctx)` and returns the JSON text of what it returned (or resolved to). Rejects
   * with an Error whose message is fit for the consumer.
   */
  call(req: {
    script: string;
    hash: string;
    fn: "run" | "reduce";
    arg: unknown;
    /** How `arg` is given to the program: "json" values cross as JSON text. */
    argKind: InputKind;
    params: unknown;
    /** More fields of `ctx` (ProgramRunParams.context). */
    context?: Record<string, unknown>;
    /** Calls with the same `keep` (and script) may share one evaluation of it (ProgramRunParams.keep). */
    keep?: string;
    /** A bytes input's content hash (ProgramRunParams.inputRef): the host may copy it into the same array each time. */
    inputRef?: string;
    memoryLimitBytes: number;
    onProgress?: (fraction: number) => void;
  }): Promise<string>;
}

export interface ProgramResult {
  output: unknown;
  /** Compute time in milliseconds, measured in the worker. */
  ms: number;
}

export interface RunProgramOptions {
  /** Required for JS programs. */
  jsHost?: JsHost;
  onProgress?: (fraction: number) => void;
}

// ---- code cache: a task may leave `code` out when this worker already has it ----------

const CODE_CACHE = 4;
const codes = new Map<string, string | Uint8Array>();

function codeFor(kind: ProgramKind, hash: string, code: string | Uint8Array | undefined): string | Uint8Array {
  if (code === undefined) {
    const cached = codes.get(hash);
    if (cached === undefined) throw new Error(`program ${hash.slice(0, 12)} was sent without its code and this worker does not have it`);
    code = cached;
  } else {
    codes.delete(hash);
    codes.set(hash, code);
    for (const k of codes.keys()) {
      if (codes.size <= CODE_CACHE) break;
      codes.delete(k);
    }
  }
  if (kind === "js" && typeof code !== "string") throw new Error("a JS program's code must be its compiled script text");
  if (kind === "wasm" && !(code instanceof Uint8Array)) throw new Error("a WASM program's code must be its bytes");
  return code;
}

// ---- WebAssembly ------------------------------------------------------------------------

interface WasmExports {
  memory: WebAssembly.Memory;
  alloc(len: number): number;
  run(ptr: number, len: number): number;
  result_len(): number;
  reduce?(ptr: number, len: number): number;
  step?(ptr: number, len: number): number;
}

interface CompiledWasm {
  module: WebAssembly.Module;
  /** The exported memory's declared maximum, in bytes (at most the task's memory limit). */
  maxBytes: number;
}

const modules = new Map<string, Promise<CompiledWasm>>();

/** Compiles once per hash (and memory limit), after checking the module against the ABI and the limit. */
function wasmModule(hash: string, bytes: Uint8Array, memoryLimitBytes: number): Promise<CompiledWasm> {
  const key = `${hash}:${memoryLimitBytes}`;
  let m = modules.get(key);
  if (!m) {
    m = (async () => {
      const { maxMemoryBytes } = checkWasmAbi(readWasmInfo(bytes), memoryLimitBytes);
      return { module: await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>), maxBytes: maxMemoryBytes };
    })();
    modules.set(key, m);
    m.catch(() => modules.delete(key));
    for (const k of modules.keys()) {
      if (modules.size <= CODE_CACHE) break;
      modules.delete(k);
    }
  }
  return m;
}

class ProgramAbort extends Error {}

/** A fresh instance per task: memory starts clean, nothing leaks from one unit to the next. */
async function instantiate(module: WebAssembly.Module): Promise<WasmExports> {
  const imports = {
    env: {
      abort(_msg: number, _file: number, line: number, column: number) {
        throw new ProgramAbort(`the program called abort (line ${line >>> 0}, column ${column >>> 0})`);
      },
    },
  };
  const instance = await WebAssembly.instantiate(module, imports);
  return instance.exports as unknown as WasmExports;
}

/**
 * The most bytes a WASM program's run, reduce or step may answer: as base64 (what a reduce's
 * result is), the 24 MiB of JSON a JS program may answer (quickjs.ts). A 222-byte program whose
 * step answered 241 MB had it copied to the event loop, encoded and serialised there, 1–4 s a
 * submission, before the state's own limit refused it.
 */
export const MAX_WASM_ANSWER_BYTES = 18 * 1024 * 1024;

/** Copies `bytes` in through alloc, calls `fn(ptr, len)`, copies result_len() bytes out. */
function callWasm(ex: WasmExports, fn: "run" | "reduce" | "step", bytes: Uint8Array): Uint8Array {
  const ptr = ex.alloc(bytes.length) >>> 0;
  let mem = new Uint8Array(ex.memory.buffer);
  if (ptr + bytes.length > mem.length) throw new Error(`alloc(${bytes.length}) returned ${ptr}, outside the program's memory (${mem.length} bytes)`);
  mem.set(bytes, ptr);
  const outPtr = ex[fn]!(ptr, bytes.length) >>> 0;
  const outLen = ex.result_len() >>> 0;
  if (outLen > MAX_WASM_ANSWER_BYTES) {
    throw new Error(`${fn} answered ${(outLen / 1024 / 1024).toFixed(1)} MiB, more than the ${MAX_WASM_ANSWER_BYTES / 1024 / 1024} MiB a program may answer`);
  }
  mem = new Uint8Array(ex.memory.buffer); // run may have grown (and so replaced) the buffer
  if (outPtr + outLen > mem.length) {
    throw new Error(`${fn} returned ${outLen} bytes at ${outPtr}, outside the program's memory (${mem.length} bytes)`);
  }
  return mem.slice(outPtr, outPtr + outLen);
}

/**
 * Whether a program that failed had run out of memory. Its memory is near the task's limit
 * (when its declared maximum is that limit: within a 16th of it, as a grow the program needed
 * would not fit), or it cannot grow by one more page although below its own maximum (the
 * process's memory limit refused it). A program stopped by a maximum it declared below the
 * task's limit fails with its own error. The page grown to find out is harmless: the
 * instance is dropped.
 */
function outOfMemory(memory: WebAssembly.Memory, maxBytes: number, memoryLimitBytes: number): boolean {
  const size = memory.buffer.byteLength;
  if (maxBytes >= memoryLimitBytes && size + Math.max(WASM_PAGE, memoryLimitBytes / 16) > memoryLimitBytes) return true;
  if (size + WASM_PAGE > maxBytes) return false;
  try {
    memory.grow(1);
    return false;
  } catch {
    return true;
  }
}

/**
 * The consumer's error for a failed WASM call. A refused allocation, or a trap or abort of the
 * kind a failed `memory.grow` leads to (unreachable, an access out of bounds) while the
 * memory cannot grow, is the memory limit.
 */
function wasmError(e: unknown, memoryLimitBytes: number, ex?: WasmExports, maxBytes = memoryLimitBytes): Error {
  const trap = e instanceof WebAssembly.RuntimeError;
  if (e instanceof RangeError && ALLOCATION_FAILURE.test(e.message)) return new Error(memoryLimitMessage(memoryLimitBytes));
  if (ex && (e instanceof ProgramAbort || (trap && /unreachable|out of bounds/i.test(e.message)))) {
    let full = false;
    try {
      full = outOfMemory(ex.memory, maxBytes, memoryLimitBytes);
    } catch {
      // A memory we cannot even look at tells us nothing.
    }
    if (full) return new Error(memoryLimitMessage(memoryLimitBytes));
  }
  if (e instanceof ProgramAbort) return new Error(e.message);
  if (trap) return new Error(`WebAssembly trap: ${e.message}`);
  return e instanceof Error ? e : new Error(String(e));
}

const utf8 = new TextEncoder();

function inputBytes(input: unknown, kind: InputKind): Uint8Array {
  if (kind === "bytes") {
    if (!(input instanceof Uint8Array)) throw new Error("a bytes input must be a Uint8Array");
    return input;
  }
  if (kind === "text") {
    if (typeof input !== "string") throw new Error("a text input must be a string");
    return utf8.encode(input);
  }
  return utf8.encode(JSON.stringify(input ?? null));
}

/** `[u32 LE length][bytes]…` of the outputs, for a WASM reduce. */
export function frameOutputs(outputs: unknown[]): Uint8Array {
  const parts = outputs.map((o, i) => {
    if (!o || typeof o !== "object" || typeof (o as B64Output).b64 !== "string") throw new Error(`output ${i} is not a WASM program's output ({ b64 })`);
    return decodeBase64((o as B64Output).b64);
  });
  const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
  const view = new DataView(out.buffer);
  let o = 0;
  for (const p of parts) {
    view.setUint32(o, p.length, true);
    out.set(p, o + 4);
    o += 4 + p.length;
  }
  return out;
}

// ---- entry points -------------------------------------------------------------------------

function parseOutput(json: string): unknown {
  return JSON.parse(json) as unknown;
}

/** Computes one unit: `{ output, ms }`, or rejects with an Error for the consumer. */
export async function runProgram(req: ProgramRequest, opts: RunProgramOptions = {}): Promise<ProgramResult> {
  const code = codeFor(req.kind, req.hash, req.code);
  const kind = inputKindOf(req.input, req.inputKind);
  if (req.kind === "wasm") {
    const { module, maxBytes } = await wasmModule(req.hash, code as Uint8Array, req.memoryLimitBytes);
    let bytes = inputBytes(req.input, kind);
    // A unit of an iterative job: the round and its broadcast come first (wasmRounds.ts).
    const round = req.context?.round;
    if (typeof round === "number") {
      const columns = Array.isArray(req.context?.columns) ? req.context.columns.length : 0;
      bytes = frameRoundInput(round, columns, bytesOf(req.context?.broadcast, "the round's broadcast"), bytes);
    }
    const t0 = performance.now();
    let ex: WasmExports | undefined;
    try {
      ex = await instantiate(module);
      const out = callWasm(ex, "run", bytes);
      return { output: { b64: encodeBase64(out) } satisfies B64Output, ms: performance.now() - t0 };
    } catch (e) {
      throw wasmError(e, req.memoryLimitBytes, ex, maxBytes);
    }
  }
  if (!opts.jsHost) throw new Error("this worker cannot run JS programs (no JS host)");
  const t0 = performance.now();
  const json = await opts.jsHost.call({
    script: code as string, hash: req.hash, fn: "run", arg: req.input, argKind: kind,
    params: req.params, context: req.context, keep: req.keep, inputRef: req.inputRef, memoryLimitBytes: req.memoryLimitBytes, onProgress: opts.onProgress,
  });
  return { output: parseOutput(json), ms: performance.now() - t0 };
}

export interface ReduceRequest {
  kind: ProgramKind;
  hash: string;
  code?: string | Uint8Array;
  /** The units' outputs, in unit order. */
  outputs: unknown[];
  params: unknown;
  memoryLimitBytes: number;
}

/**
 * Merges outputs with the program's reduce: the WASM path runs here (WebAssembly without
 * imports is sandboxed by construction); the JS path needs a JsHost (the server uses QuickJS
 * instead, see reduceOnServer.ts).
 */
export async function reduceProgram(req: ReduceRequest, opts: RunProgramOptions = {}): Promise<{ result: unknown; ms: number }> {
  const code = codeFor(req.kind, req.hash, req.code);
  if (req.kind === "wasm") {
    const { module, maxBytes } = await wasmModule(req.hash, code as Uint8Array, req.memoryLimitBytes);
    if (!WebAssembly.Module.exports(module).some((e) => e.name === "reduce" && e.kind === "function")) {
      throw new Error("the program does not export reduce");
    }
    const framed = frameOutputs(req.outputs);
    const t0 = performance.now();
    let ex: WasmExports | undefined;
    try {
      ex = await instantiate(module);
      const out = callWasm(ex, "reduce", framed);
      return { result: { b64: encodeBase64(out) } satisfies B64Output, ms: performance.now() - t0 };
    } catch (e) {
      throw wasmError(e, req.memoryLimitBytes, ex, maxBytes);
    }
  }
  if (!opts.jsHost) throw new Error("this worker cannot run JS programs (no JS host)");
  const t0 = performance.now();
  const json = await opts.jsHost.call({
    script: code as string, hash: req.hash, fn: "reduce", arg: req.outputs, argKind: "json",
    params: req.params, memoryLimitBytes: req.memoryLimitBytes,
  });
  return { result: parseOutput(json), ms: performance.now() - t0 };
}

/**
 * A WASM program's step (an iterative job, on the server): `step(ptr, len)` on the framed
 * input (wasmRounds.ts), in a fresh instance; returns the bytes it answered.
 */
export async function stepWasm(req: { hash: string; code: Uint8Array; input: Uint8Array; memoryLimitBytes: number }): Promise<Uint8Array> {
  const { module, maxBytes } = await wasmModule(req.hash, req.code, req.memoryLimitBytes);
  if (!WebAssembly.Module.exports(module).some((e) => e.name === "step" && e.kind === "function")) throw new Error("the program does not export step");
  let ex: WasmExports | undefined;
  try {
    ex = await instantiate(module);
    return callWasm(ex, "step", req.input);
  } catch (e) {
    throw wasmError(e, req.memoryLimitBytes, ex, maxBytes);
  }
}

/** Rate-limits progress reports: at most one per `everyMs`, always the latest value. */
export function throttleProgress(send: (fraction: number) => void, everyMs = 100): (fraction: number) => void {
  let last = -Infinity;
  return (fraction: number) => {
    if (typeof fraction !== "number" || !Number.isFinite(fraction)) return;
    const now = Date.now();
    if (now - last < everyMs) return;
    last = now;
    send(Math.min(1, Math.max(0, fraction)));
  };
}
