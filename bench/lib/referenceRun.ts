// A single-process reference run of an iterative program: the same algorithm a job runs on
// volunteers (the same CSV shards, the program's own run on each shard, the same merge, its
// step), in one loop with nothing in between. Tests compare a trained job's weights with
// it; the bench compares its wall time with a job's.

import { pathToFileURL } from "node:url";
import { parseCsv, shardRows } from "../../server/services/programs/csvShards";
import { aggregate, DEFAULT_TRIM, isNumericMerge } from "../../server/services/programs/aggregate";
import { checkStep, type ProgramStep } from "../../server/services/programs/programStep";

type Program = {
  run(input: Uint8Array, ctx: Record<string, unknown>): unknown;
  step(merged: unknown, state: unknown, ctx: Record<string, unknown>): unknown;
  reduce?(outputs: unknown[], ctx: Record<string, unknown>): unknown;
};

export interface ReferenceOptions {
  /** The program's file (an ES module exporting run and step). */
  program: string;
  csv: string;
  shards: number;
  merge?: string;
  trim?: number;
  params?: Record<string, unknown>;
  rounds: number;
}

export interface ReferenceRun {
  rounds: Array<{ round: number; metrics: Record<string, number> }>;
  /** The job's result: step's result if it said done, else its last state. */
  result: unknown;
  /** Wall time of the rounds (not of parsing the CSV). */
  ms: number;
}

/** Values cross the wire as JSON: the reference passes them the same way, so every bit matches. */
const viaJson = <T>(v: T): T => JSON.parse(JSON.stringify(v ?? null)) as T;

export async function referenceRun(o: ReferenceOptions): Promise<ReferenceRun> {
  const program = (await import(pathToFileURL(o.program).href)) as Program;
  const table = parseCsv(o.csv);
  const shards = shardRows(table, o.shards).map((b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
  const columns = table.columns;
  const params = o.params ?? {};
  const stepCtx = (round: number, arrived?: number) => ({ columns, params, round, shards: shards.length, ...(arrived ? { arrived } : {}), progress() {} });
  const t0 = performance.now();
  let step: ProgramStep = checkStep(viaJson(await program.step(null, null, stepCtx(0))), 0);
  const rounds: ReferenceRun["rounds"] = [];
  for (let round = 1; !step.done; round++) {
    const broadcast = viaJson(step.next);
    const outputs = await Promise.all(shards.map(async (s) => viaJson(await program.run(s, { columns, params, round, broadcast, progress() {} }))));
    let merged: unknown = outputs;
    if (o.merge === "reduce") merged = viaJson(await program.reduce!(outputs, { params, progress() {} }));
    else if (isNumericMerge(o.merge)) merged = aggregate(o.merge, outputs, o.trim ?? DEFAULT_TRIM);
    step = checkStep(viaJson(await program.step(merged, viaJson(step.state), stepCtx(round, outputs.length))), round);
    rounds.push({ round, metrics: step.metrics });
    if (round >= o.rounds) break;
  }
  return { rounds, result: viaJson(step.done ? step.result : step.state), ms: performance.now() - t0 };
}
