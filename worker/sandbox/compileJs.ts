// Server side (Node): checks and compiles a consumer's program when it is uploaded, so that
// volunteers only ever receive code that has the ABI's shape (see abi.ts).

import * as esbuild from "esbuild";
import { hasDynamicImport, MAX_PROGRAM_MEMORY_BYTES, PROGRAM_GLOBAL, type Comparator } from "./abi";
import { runServerSandbox } from "./reduceOnServer";
import { checkWasmAbi, readWasmInfo } from "./wasmInfo";
import { compilerRefusal, withCompiler } from "./compilerService";

export interface CompiledJsProgram {
  /** A classic script (an IIFE) that assigns the module namespace to globalThis.__tabgridProgram. */
  script: string;
  /** The module's export names. */
  exports: string[];
  /** The module's `comparator` export, when it has one. */
  comparator?: Comparator;
  /** Source map (JSON) from the script back to the uploaded file: errors are located in it (programErrors.ts). */
  sourceMap: string;
}

export interface CompileOptions {
  /** The uploaded file's name, for messages (`myprog.js:3:5: …`); "program.js" if none. */
  fileName?: string;
  /** Limits for evaluating the module to read `comparator` (QuickJS, in a worker thread). */
  comparatorTimeMs?: number;
  /** Who uploads it: reading comparators is shared fairly between accounts. */
  owner?: string;
}

/** An upload refused, with a message for the consumer (file:line:column where it applies). */
export class ProgramError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProgramError";
  }
}

/** The file name the script has where it runs (vmHost.ts, browserWorker.ts, quickjs.ts look for it). */
export const SCRIPT_FILE = "program.js";

/**
 * An uploaded file's name as messages show it: its last path segment, in letters, digits,
 * dots, dashes and underscores (others become "_"), at most 80 characters; "program.js" if
 * nothing is left.
 */
export function programFileName(name: string | undefined): string {
  const base = (name ?? "").split(/[\\/]/).pop()!.replace(/[^A-Za-z0-9._-]/g, "_").slice(-80);
  return /[A-Za-z0-9]/.test(base) ? base : SCRIPT_FILE;
}

function where(file: string, loc: { line: number; column: number } | null | undefined): string {
  return loc ? `${file}:${loc.line}:${loc.column + 1}: ` : "";
}

function buildFailure(e: unknown, file: string): ProgramError {
  const errors = (e as { errors?: esbuild.Message[] }).errors;
  if (!errors?.length) return new ProgramError(`the program could not be compiled: ${(e as Error).message}`);
  const lines = errors.slice(0, 5).map((m) => `${where(file, m.location)}${m.text}`);
  if (errors.length > 5) lines.push(`… and ${errors.length - 5} more errors`);
  return new ProgramError(lines.join("\n"));
}

const selfContained: esbuild.Plugin = {
  name: "tabgrid-self-contained",
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => ({
      errors: [{
        text: `${args.kind === "require-call" ? "require" : "import"} of "${args.path}" is not allowed: a program must be self-contained (bundle its dependencies in before uploading)`,
      }],
    }));
  },
};

/** Line and column (1-based) of a character offset. */
function lineColumn(source: string, index: number): { line: number; column: number } {
  const before = source.slice(0, index).split("\n");
  return { line: before.length, column: before[before.length - 1].length };
}

function checkComparator(value: unknown): Comparator {
  const bad = (why: string) =>
    new ProgramError(`the exported comparator ${why}: use { kind: "exact" } or { kind: "tolerance", relative: 1e-9, absolute: 0 }`);
  if (!value || typeof value !== "object") throw bad("is not an object");
  const c = value as Record<string, unknown>;
  if (c.kind === "exact") return { kind: "exact" };
  if (c.kind !== "tolerance") throw bad(`has an unknown kind ${JSON.stringify(c.kind)}`);
  const relative = c.relative ?? 0;
  const absolute = c.absolute ?? 0;
  for (const [name, v] of [["relative", relative], ["absolute", absolute]] as const) {
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw bad(`has ${name} = ${JSON.stringify(v)}, which is not a number ≥ 0`);
  }
  if (relative === 0 && absolute === 0) throw bad("is a tolerance of zero (that is exact: say so)");
  return { kind: "tolerance", relative: relative as number, absolute: absolute as number };
}

/**
 * Compiles an uploaded JS program: a self-contained ES module exporting `run`. Rejects syntax
 * errors, imports and requires, top-level await, import.meta and import(), and a missing
 * `run`, with messages that say where and why. Reads `comparator` by evaluating the module
 * in QuickJS (in a worker thread, with time and memory limits) when the module exports one.
 */
export async function compileJsProgram(source: string, opts: CompileOptions = {}): Promise<CompiledJsProgram> {
  if (typeof source !== "string" || !source.trim()) throw new ProgramError("the program is empty");
  const refusal = compilerRefusal(opts.owner);
  if (refusal) throw new ProgramError(refusal);
  const file = programFileName(opts.fileName);
  const compiled = await withCompiler(() => compile(source, file), opts.owner);
  if (!compiled) throw new ProgramError("the program could not be compiled: it stopped the compiler (nested too deep, or too large to parse)");
  const { script, sourceMap, exports } = compiled.value;
  if (!exports.includes("run")) {
    throw new ProgramError(
      `the program does not export a function named run (add: export function run(input, ctx) { … })${exports.length ? `; it exports ${exports.join(", ")}` : ""}`,
    );
  }
  const out: CompiledJsProgram = { script, exports, sourceMap };
  if (exports.includes("comparator")) {
    let value: unknown;
    try {
      value = await runServerSandbox({ op: "comparator", script, timeMs: opts.comparatorTimeMs ?? 2000, memoryMb: 64 }, { owner: opts.owner });
    } catch (e) {
      throw new ProgramError(`the comparator could not be read (it must be a constant object computed without host APIs): ${(e as Error).message}`);
    }
    out.comparator = checkComparator(value);
  }
  return out;
}

/** The module bundled and checked (no imports, import.meta or import()), then made a classic script. */
async function compile(source: string, file: string): Promise<{ script: string; sourceMap: string; exports: string[] }> {
  let esm: esbuild.BuildResult<{ write: false; metafile: true }>;
  try {
    esm = await esbuild.build({
      stdin: { contents: source, sourcefile: file, loader: "js" },
      bundle: true,
      write: false,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      // The script is a classic one (an IIFE): say so here, where locations are the source's.
      supported: { "top-level-await": false },
      metafile: true,
      // Inline, so that the transform below carries it on to the script.
      sourcemap: "inline",
      outfile: "program.mjs",
      logLevel: "silent",
      legalComments: "none",
      plugins: [selfContained],
    });
  } catch (e) {
    throw buildFailure(e, file);
  }
  const meta = Object.values(esm.metafile.outputs)[0];
  const exports = [...(meta?.exports ?? [])];
  const meta_ = /\bimport\s*\.\s*meta\b/.exec(source);
  if (meta_ && esm.outputFiles[0].text.includes("import.meta")) {
    throw new ProgramError(`${where(file, lineColumn(source, meta_.index))}import.meta is not available to programs`);
  }

  let script: string;
  let sourceMap: string;
  try {
    const iife = await esbuild.transform(esm.outputFiles[0].text, {
      format: "iife",
      globalName: PROGRAM_GLOBAL,
      target: "es2022",
      logLevel: "silent",
      legalComments: "none",
      sourcefile: SCRIPT_FILE,
      sourcemap: "external",
      sourcesContent: false,
    });
    script = iife.code;
    sourceMap = iife.map;
  } catch (e) {
    throw buildFailure(e, file);
  }
  if (hasDynamicImport(script)) {
    const m = /(^|[^\w$.])import\s*\(/.exec(source);
    const loc = m ? lineColumn(source, m.index + m[1].length) : null;
    throw new ProgramError(`${where(file, loc)}import() is not allowed: a program must be self-contained`);
  }
  return { script, sourceMap, exports };
}

export interface WasmProgramInfo {
  exports: string[];
  hasReduce: boolean;
  /** The exported memory's declared maximum, in bytes. */
  maxMemoryBytes: number;
}

/**
 * Checks an uploaded WASM program: a valid module (compiled by this Node's V8), importing
 * nothing but env.abort, exporting memory (with a declared maximum of at most
 * `memoryLimitBytes`), alloc, run and result_len with the ABI's signatures. Compiled
 * asynchronously: V8 then validates and compiles on its background threads (a module of
 * 900,000 functions held the event loop ~250 ms in `new WebAssembly.Module`).
 */
export async function inspectWasm(bytes: Uint8Array, memoryLimitBytes: number = MAX_PROGRAM_MEMORY_BYTES): Promise<WasmProgramInfo> {
  if (!(bytes instanceof Uint8Array)) throw new ProgramError("a WASM program must be given as bytes");
  try {
    const info = readWasmInfo(bytes); // first: it says "not a WebAssembly module" clearly
    try {
      await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
    } catch (e) {
      throw new Error(`not a valid WebAssembly module: ${(e as Error).message.replace(/^WebAssembly\.(Module|compile)\(\): /, "")}`);
    }
    return checkWasmAbi(info, memoryLimitBytes);
  } catch (e) {
    throw e instanceof ProgramError ? e : new ProgramError((e as Error).message);
  }
}
