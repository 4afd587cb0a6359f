// A short trial run of an uploaded program in this tab, to prefill its CPU-seconds per unit:
// the program computes the job's first unit in the same sandbox a volunteer tab uses (a Web
// Worker inside the opaque-origin iframe, worker/browser/sandboxPool.ts), and its time is
// turned into reference CPU-seconds with this machine's benchmark score, as the server does
// with a volunteer's (docs/pricing.md). Client-only.

import { createSandboxPool } from "../../../worker/browser/sandboxPool";
import { measureBenchmark } from "../../../worker/client/benchmark";
import { MAX_PROGRAM_MEMORY_BYTES, PROGRAM_KERNEL, type InputKind } from "../../../worker/sandbox/abi";

/** How long the trial may take before it is stopped. */
export const TRIAL_TIMEOUT_MS = 5000;

export interface TrialProgram {
  hash: string;
  kind?: string;
  /** The compiled script's blob, for a JS program. */
  scriptHash?: string | null;
}

export interface TrialInput {
  input: unknown;
  inputKind: InputKind;
}

export type TrialOutcome =
  | { ok: true; ms: number; benchmark: number; cpuSeconds: number }
  | { ok: false; reason: string; /** A lower bound, when the trial ran out of time. */ atLeast?: number };

/** The first unit's input, cut from the form's fields the way the server splits the job. */
export async function firstUnitInput(
  mode: "json" | "range" | "lines" | "blocks" | "csv",
  f: { items: string; start: string; end: string; chunks: string; blockBytes: string },
  file: File | null,
): Promise<TrialInput> {
  const chunks = Number(f.chunks);
  switch (mode) {
    case "json": {
      const items = JSON.parse(f.items) as unknown;
      if (!Array.isArray(items) || items.length === 0) throw new Error("the JSON input is not a non-empty array");
      return { input: items[0], inputKind: "json" };
    }
    case "range": {
      const start = Number(f.start);
      const size = Number(f.end) - start;
      if (!Number.isInteger(start) || !Number.isInteger(chunks) || chunks < 1 || !(size >= chunks)) throw new Error("the range or the chunk count is not valid");
      return { input: { start, end: start + Math.floor(size / chunks) }, inputKind: "json" };
    }
    case "lines": {
      if (!file) throw new Error("choose the data file first");
      if (!Number.isInteger(chunks) || chunks < 1) throw new Error("the chunk count is not valid");
      const lines = (await file.text()).split(/\r?\n/);
      if (lines.length && lines[lines.length - 1] === "") lines.pop();
      return { input: lines.slice(0, Math.floor(lines.length / chunks)).join("\n"), inputKind: "text" };
    }
    case "csv":
      // The shards are cut on the server (and an iterative unit needs its round's broadcast).
      throw new Error("a CSV's shards are cut on the server, so there is no first unit to time here");
    case "blocks": {
      if (!file) throw new Error("choose the data file first");
      const blockBytes = Number(f.blockBytes);
      if (!Number.isInteger(blockBytes) || blockBytes < 1) throw new Error("the block size is not valid");
      return { input: new Uint8Array(await file.slice(0, blockBytes).arrayBuffer()), inputKind: "bytes" };
    }
  }
}

let benchmark: number | undefined;

async function fetchBlob(hash: string): Promise<Uint8Array> {
  const res = await fetch(`/api/blobs/${hash}`);
  if (!res.ok) throw new Error(`could not fetch the program (HTTP ${res.status})`);
  return new Uint8Array(await res.arrayBuffer());
}

/** Runs the program once on `unit` in the sandbox; never throws. */
export async function trialRun(program: TrialProgram, unit: TrialInput, params: unknown, timeoutMs = TRIAL_TIMEOUT_MS): Promise<TrialOutcome> {
  benchmark ??= measureBenchmark();
  const score = benchmark;
  const kind = program.kind === "wasm" ? "wasm" : "js";
  const pool = createSandboxPool({ threads: 1 });
  try {
    if (kind === "js" && !program.scriptHash) return { ok: false, reason: "the program's compiled script is unknown" };
    const bytes = await fetchBlob(kind === "js" ? program.scriptHash! : program.hash);
    const code = kind === "js" ? new TextDecoder().decode(bytes) : bytes;
    const r = await pool.run(
      { kernel: PROGRAM_KERNEL, params: { kind, hash: program.hash, code, params, memoryLimitBytes: MAX_PROGRAM_MEMORY_BYTES, inputKind: unit.inputKind }, input: unit.input },
      "trial",
      { timeoutMs },
    );
    return { ok: true, ms: r.ms, benchmark: score, cpuSeconds: (r.ms * score) / 1000 };
  } catch (e) {
    const message = (e as Error).message ?? String(e);
    if ((e as Error).name === "TimeLimitError") {
      return { ok: false, reason: `it did not finish within ${timeoutMs / 1000} s on your machine`, atLeast: (timeoutMs * score) / 1000 };
    }
    return { ok: false, reason: message };
  } finally {
    pool.terminate();
  }
}
