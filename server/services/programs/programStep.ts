// An iterative program's step: after each round, the program's own `step(merged, state, ctx)`
// makes the next round's broadcast and state, or ends the job with its result. Consumer code
// on the server, so it runs where a program's reduce runs: in QuickJS, in a thread of its own,
// with the job's time and memory limits (worker/sandbox/stepSandbox.ts).

import { frameOutputs } from "../../../worker/sandbox/runProgram";
import { runStep } from "../../../worker/sandbox/stepSandbox";
import { bytesOf, f64Bytes, frameStepInput, outputNumbers, readStepOutput } from "../../../worker/sandbox/wasmRounds";
import type { BlobStore } from "../../store/blobs";
import { aggregate, DEFAULT_TRIM, isNumericMerge } from "./aggregate";
import { compiledScript, wasmModule } from "./scriptCache";

/** What one step decided, checked. */
export type ProgramStep =
  | { done: false; next: unknown; state: unknown; metrics: Record<string, number> }
  | { done: true; result: unknown; state: unknown; metrics: Record<string, number> };

/** The broadcast travels in every task of a round: kept small so rounds stay fast. */
export const MAX_BROADCAST_BYTES = 1024 * 1024;
export const MAX_STATE_BYTES = 16 * 1024 * 1024;
/**
 * The broadcast is stored with every unit of the round (its row's input): its size times the
 * units is what a round writes. A 1 MiB next with 450 units wrote 430 MB and took the server's
 * memory up by 0.8 GB, for 0.45 credits.
 */
export const MAX_ROUND_BROADCAST_BYTES = 16 * 1024 * 1024;
const MAX_METRICS = 16;

/** The job's settings a step needs, as stored in the job's params (`submit.ts`). */
export interface StepJob {
  kind: "js" | "wasm";
  /** The blob of the code: a JS program's compiled script, a WASM program's module. */
  codeHash: string;
  merge: string | null;
  trim?: number;
  params: unknown;
  context?: Record<string, unknown>;
  timeMs: number;
  memoryMb: number;
  /** The job's owner: runs on the server's sandbox threads are shared fairly between accounts. */
  owner?: string;
  /** Aborted when the owner cancels the job: the step stops (or never starts). */
  signal?: AbortSignal;
  /** Longest the step may wait for a sandbox thread (the first step, run during a submission). */
  waitMs?: number;
  /** The job's id: a JS program's steps may then share one evaluation of it in the kept step thread. */
  jobId?: string;
}

const size = (v: unknown) => Buffer.byteLength(JSON.stringify(v ?? null));

/** Checks what a program's step returned; throws an Error worded for the consumer. */
export function checkStep(value: unknown, round: number, units = 1): ProgramStep {
  const shape = "step must return { next, state, metrics? } or { done: true, result, metrics? }";
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error(`${shape}; after round ${round} it returned ${JSON.stringify(value)?.slice(0, 80)}`);
  const v = value as Record<string, unknown>;
  const metrics: Record<string, number> = {};
  if (v.metrics !== undefined && v.metrics !== null) {
    if (typeof v.metrics !== "object" || Array.isArray(v.metrics)) throw new Error("step's metrics must be an object of numbers, like { loss: 0.31, accuracy: 0.9 }");
    const entries = Object.entries(v.metrics as Record<string, unknown>);
    if (entries.length > MAX_METRICS) throw new Error(`step returned ${entries.length} metrics; at most ${MAX_METRICS} are kept`);
    for (const [k, x] of entries) {
      if (k.length > 40) throw new Error(`the metric name ${JSON.stringify(k.slice(0, 40))}… is longer than 40 characters`);
      if (typeof x !== "number" || !Number.isFinite(x)) throw new Error(`the metric ${k} is ${JSON.stringify(x)}, not a finite number`);
      metrics[k] = x;
    }
  }
  const state = v.state === undefined ? null : v.state;
  if (size(state) > MAX_STATE_BYTES) throw new Error(`step's state is larger than ${MAX_STATE_BYTES / 1024 / 1024} MiB`);
  if (v.done === true) return { done: true, result: v.result === undefined ? state : v.result, state, metrics };
  if (v.done !== undefined && v.done !== false) throw new Error(`${shape}; done must be true or false`);
  if (v.next === undefined) throw new Error(`${shape}; it returned neither next nor done`);
  const nextBytes = size(v.next);
  if (nextBytes > MAX_BROADCAST_BYTES) throw new Error(`step's next (sent to every unit) is larger than ${MAX_BROADCAST_BYTES / 1024} KiB`);
  if (nextBytes * units > MAX_ROUND_BROADCAST_BYTES) {
    throw new Error(`step's next is ${Math.ceil(nextBytes / 1024)} KiB and goes with each of the round's ${units} units: at most ${MAX_ROUND_BROADCAST_BYTES / 1024 / 1024} MiB a round in all; send less, or split the data into fewer shards`);
  }
  return { done: false, next: v.next, state, metrics };
}

/**
 * Runs the step after `round` (0: before the first round, with merged and state null). The
 * outputs are merged first as the job says: the program's reduce (in the same sandbox
 * call), a numeric merge done here, or the outputs as they are (concat).
 */
export async function runProgramStep(
  deps: { blobs: BlobStore }, job: StepJob, round: number, outputs: unknown[] | null, state: unknown, shards: number, missing: number[] = [],
): Promise<ProgramStep> {
  if (job.kind === "wasm") return checkStep(await wasmStep(deps, job, round, outputs, state, shards), round, shards);
  const script = await compiledScript(deps.blobs, job.codeHash);
  let merged: unknown = null;
  let reduce: unknown[] | undefined;
  if (outputs) {
    if (job.merge === "reduce") reduce = outputs;
    else if (isNumericMerge(job.merge)) {
      try {
        merged = aggregate(job.merge, outputs, job.trim ?? DEFAULT_TRIM);
      } catch (e) {
        throw new Error(`cannot merge round ${round}'s outputs with ${job.merge}: ${(e as Error).message}`);
      }
    } else merged = outputs;
  }
  // A round closed at a share of its units: `missing` names the shards whose outputs did not arrive.
  const ctx = { ...job.context, params: job.params ?? {}, round, shards, ...(outputs ? { arrived: outputs.length, missing } : {}) };
  const keep = job.jobId === undefined ? {} : { keep: `${job.jobId}:${job.codeHash}` };
  const value = await runStep({ script, merged, reduce, state, ctx, timeMs: job.timeMs, memoryMb: job.memoryMb, ...keep }, { owner: job.owner, signal: job.signal, waitMs: job.waitMs });
  return checkStep(value, round, shards);
}

/**
 * A WASM program's step: its outputs (bytes) merged as little-endian f64s by a numeric merge,
 * or framed as they are (concat); the state and the answer as bytes (worker/sandbox/wasmRounds.ts).
 */
async function wasmStep(deps: { blobs: BlobStore }, job: StepJob, round: number, outputs: unknown[] | null, state: unknown, shards: number) {
  const code = await wasmModule(deps.blobs, job.codeHash);
  let merged: Uint8Array = new Uint8Array(0);
  if (outputs) {
    try {
      if (isNumericMerge(job.merge)) merged = f64Bytes(aggregate(job.merge, outputs.map(outputNumbers), job.trim ?? DEFAULT_TRIM) as number[]);
      else merged = frameOutputs(outputs);
    } catch (e) {
      throw new Error(`cannot merge round ${round}'s outputs with ${job.merge ?? "concat"}: ${(e as Error).message}`);
    }
  }
  const columns = Array.isArray(job.context?.columns) ? job.context.columns.length : 0;
  const input = frameStepInput({ round, shards, columns, arrived: outputs?.length ?? 0 }, bytesOf(state, "the state"), merged);
  const answer = await runStep({ kind: "wasm", hash: job.codeHash, code, input, timeMs: job.timeMs, memoryMb: job.memoryMb }, { owner: job.owner, signal: job.signal, waitMs: job.waitMs });
  if (!(answer instanceof Uint8Array)) throw new Error("the step sandbox answered something other than bytes");
  return readStepOutput(answer);
}
