/**
 * # The program ABI: what a consumer's job code must look like
 *
 * A job is either a built-in kernel or a *program* the consumer uploads: a JavaScript ES
 * module or a WebAssembly module. Programs are untrusted. Volunteers run them only inside
 * Web Workers (in a sandboxed, opaque-origin iframe whose Content-Security-Policy forbids
 * any network access) or Node child processes (a bare `node:vm` context), with a wall-clock
 * limit and a memory limit per task; the server runs a program's `reduce` inside QuickJS
 * (JS) or a worker thread (WASM). Neither can reach the network, the file system, cookies
 * or the page that hosts them.
 *
 * ## JavaScript
 *
 * One self-contained ES module (no `import`, no `require`: bundle dependencies in before
 * uploading). It is compiled once on upload (worker/sandbox/compileJs.ts) and checked:
 *
 * ```js
 * // Required. Called once per unit of work; may be async (return a Promise).
 * export function run(input, ctx) {
 *   // ctx.params: the job's parameters (any JSON value the consumer submitted)
 *   // ctx.progress(fraction): optional progress report, 0..1 (cheap; rate-limited by the runtime)
 *   return { sum: input.end - input.start };          // any JSON-serialisable value
 * }
 * // Optional. Merges the units' outputs (in unit order) into the job's result, on the server.
 * export function reduce(outputs, ctx) { return outputs.reduce((a, o) => a + o.sum, 0); }
 * // Optional. How two volunteers' outputs for the same unit are compared (default exact).
 * export const comparator = { kind: "tolerance", relative: 1e-9, absolute: 1e-12 };
 * ```
 *
 * - `input` is one of: a JSON value (an element of the job's JSON array, or `{ start, end }`
 *   for a range job), a string (a chunk of whole lines of a text file), or a `Uint8Array`
 *   (a block of a binary file).
 * - The output is passed through `JSON.parse(JSON.stringify(output))` where it was computed,
 *   so browser and Node volunteers produce identical values: `undefined` becomes `null`,
 *   `NaN`/`Infinity` become `null`, class instances become plain objects, and an output
 *   that cannot be serialised (a cycle, a BigInt) fails the task.
 * - The module is evaluated afresh for every task: state kept in module variables does not
 *   survive from one unit to the next (and must not: units are compared across volunteers).
 *   Iterative jobs (`step`) are the exception: the units of one job that a worker runs share
 *   one evaluation of the module, so its code stays warm across rounds. Module state may then
 *   survive between them, but a unit must not depend on it (the next may run elsewhere).
 * - Guaranteed globals: the ECMAScript built-ins (without `eval`/`new Function`, which are
 *   refused, and without `WebAssembly`/`SharedArrayBuffer`: upload a WASM program instead),
 *   plus `console` (output is not collected), `setTimeout`/`clearTimeout`, `queueMicrotask`,
 *   `performance.now()`, UTF-8 `TextEncoder`/`TextDecoder` and `structuredClone` (no
 *   transfer list). Stack traces show the program's own frames only, and
 *   `Error.prepareStackTrace` is not called on Node volunteers. Browsers have more, but
 *   anything that reaches the network (`fetch`, `XMLHttpRequest`, `WebSocket`,
 *   `importScripts` of a URL) is blocked, and there are no nested workers.
 * - Limits: each task has a wall-clock limit (it includes starting a fresh worker, about
 *   0.2 s on Node volunteers, less in browsers) and a memory limit. On Node volunteers the
 *   kernel limits the program process's memory (heap, ArrayBuffers and WASM memory alike:
 *   worker/node/programProcess.ts), or where it cannot, the V8 heap and ArrayBuffer memory
 *   are each capped at the limit; in browsers a program that exhausts memory crashes the
 *   sandbox (taking the tasks running beside it with it), which fails its task and restarts
 *   the sandbox. Exceeding a limit fails the task with "time limit of N s exceeded", "memory
 *   limit of N MiB exceeded" or (browser) "the sandbox stopped responding: its process
 *   crashed, most likely because a program exhausted its memory".
 * - `comparator` must be a plain constant object: it is read once, on upload, by evaluating
 *   the module in QuickJS.
 * - `reduce` runs on the server in QuickJS (an interpreter: plain ECMAScript, no timers, a
 *   few seconds and a few hundred MiB at most); keep it simple.
 *
 * ## WebAssembly
 *
 * A module whose only allowed import is `env.abort(i32, i32, i32, i32)` (AssemblyScript's;
 * calling it fails the task), exporting:
 *
 * | export | signature | meaning |
 * |---|---|---|
 * | `memory` | memory with a declared **maximum** ≤ the job's memory limit | |
 * | `alloc` | `(len: i32) -> i32` | returns a pointer to `len` writable bytes |
 * | `run` | `(ptr: i32, len: i32) -> i32` | computes one unit from the input bytes, returns a pointer to the output |
 * | `result_len` | `() -> i32` | length in bytes of the output `run` (or `reduce`) just returned |
 * | `reduce` (optional) | `(ptr: i32, len: i32) -> i32` | merges outputs framed as `[u32 LE length][bytes]…`, in unit order |
 *
 * | `step` (optional) | `(ptr: i32, len: i32) -> i32` | an iterative job's step, on the server (below) |
 *
 * Input bytes: the UTF-8 JSON text of a JSON or range input, the UTF-8 text of a line
 * chunk, the raw bytes of a block. The output is bytes, carried as `{ b64: "<base64>" }`.
 *
 * Iterative jobs (wasmRounds.ts; u32 and f64 little-endian): in a round, `run` gets
 * `[u32 round][u32 columns][u32 n][n bytes: the broadcast][the unit's input]` (columns: of
 * a CSV input, else 0). With a numeric merge (mean, median, trimmed-mean) its output is read
 * as f64s; with concat, `step` gets the outputs framed as for `reduce`. `step` gets
 * `[u32 round][u32 shards][u32 columns][u32 arrived][u32 n][n bytes: state][merged]` (round
 * 0: no state, nothing merged) and returns `[u32 0][u32 n][next][u32 n][state][metrics]` for
 * another round, or `[u32 1][u32 n][result][metrics]` to end the job; metrics are
 * `[u32 count]` then per metric `[u32 n][n bytes: UTF-8 name][f64 value]`.
 * A fresh instance (fresh memory) is made for every task. A trap (`unreachable`, an out of
 * bounds access, a failed `memory.grow` turned into a trap) fails the task; when the memory
 * could not grow because of the task's limit, with "memory limit of N MiB exceeded".
 */

/** `TaskRun.kernel` of a program task. */
export const PROGRAM_KERNEL = "program";

/** The global the compiled JS script assigns the module namespace to. */
export const PROGRAM_GLOBAL = "__tabgridProgram";

export type ProgramKind = "js" | "wasm";

/**
 * How the input is encoded for a WASM program. A JS program receives the value itself, but
 * a string input is ambiguous for WASM (a JSON string element is sent as its JSON text,
 * a line chunk as the raw text), so the task should say which it is. Without it: a
 * Uint8Array is "bytes", a string is "text", anything else "json".
 */
export type InputKind = "json" | "text" | "bytes";

export type Comparator = { kind: "exact" } | { kind: "tolerance"; relative: number; absolute: number };

/**
 * `TaskRun.params` of a program task once the volunteer has fetched what it needs
 * (worker/client/prepareTask.ts): everything a worker with no network access needs.
 */
export interface ProgramRunParams {
  kind: ProgramKind;
  /** Content hash of the program; workers cache compiled modules by it. */
  hash: string;
  /**
   * The compiled JS script (compileJsProgram's `script`) or the WASM bytes. May be left
   * out when the worker has already been given the code for this hash.
   */
  code?: string | Uint8Array;
  /** The job's parameters, given to `run` as `ctx.params`. */
  params: unknown;
  memoryLimitBytes: number;
  inputKind?: InputKind;
  /**
   * More fields of `ctx`, as JSON values: an iterative job's `round` and `broadcast` (what
   * its step sent to every unit of the round), a CSV input's `columns`.
   */
  context?: Record<string, unknown>;
  /**
   * Set for the units of an iterative job (its id): the worker may run them in one kept
   * evaluation of the module instead of a fresh one per unit, so the program's code stays
   * compiled and warm from one round to the next.
   */
  keep?: string;
  /** The content hash of a blob input (a shard, a chunk of a file): a worker may keep the input by it. */
  inputRef?: string;
}

/** What a worker runs: `runProgram`'s argument. */
export interface ProgramRequest extends ProgramRunParams {
  input: unknown;
}

/** A WASM program's output (and a WASM reduce's result). */
export interface B64Output {
  b64: string;
}

export const MiB = 1024 * 1024;
/** 64 KiB: a WebAssembly page. */
export const WASM_PAGE = 65536;

/** Largest memory limit a program may ask for; also the WASM maximum accepted by default. */
export const MAX_PROGRAM_MEMORY_BYTES = 1024 * MiB;

export function isProgramParams(p: unknown): p is ProgramRunParams {
  if (!p || typeof p !== "object") return false;
  const o = p as Record<string, unknown>;
  return (o.kind === "js" || o.kind === "wasm") && typeof o.hash === "string" && typeof o.memoryLimitBytes === "number";
}

export function inputKindOf(input: unknown, declared?: InputKind): InputKind {
  if (declared) return declared;
  if (input instanceof Uint8Array) return "bytes";
  if (typeof input === "string") return "text";
  return "json";
}

export function formatMiB(bytes: number): string {
  const mib = bytes / MiB;
  return `${Number.isInteger(mib) ? mib : mib.toFixed(1)} MiB`;
}

/** How a task that ran out of memory fails, whatever ran out and however it was noticed. */
export function memoryLimitMessage(memoryLimitBytes: number): string {
  return `memory limit of ${formatMiB(memoryLimitBytes)} exceeded`;
}

/**
 * The RangeError messages with which V8 refuses memory (a refused ArrayBuffer, resize or
 * WebAssembly memory): seen when the process's memory limit is reached.
 */
export const ALLOCATION_FAILURE = /allocation failed|out of memory|could not allocate|cannot allocate|unable to grow/i;

/**
 * A dynamic import() would reach Node's module loader from a vm context, and the errors it
 * throws are objects of the host realm (a way out of the sandbox), so programs may not use
 * it. Conservative: an "import(" inside a string also counts.
 */
const DYNAMIC_IMPORT = /(^|[^\w$.])import\s*(\/\*[\s\S]*?\*\/\s*|\/\/[^\n]*\n\s*)*\(/;

export function hasDynamicImport(script: string): boolean {
  return DYNAMIC_IMPORT.test(script);
}
