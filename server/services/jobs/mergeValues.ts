import { getKernel } from "../../../worker/kernels";
import { aggregate, type NumericMerge } from "../programs/aggregate";

/**
 * A merge the server computes itself from a job's outputs (their JSON texts, in unit order):
 * a built-in kernel's reduce, a numeric merge, or a WASM program's outputs end to end. Pure,
 * so it runs on the event loop for small jobs and in a sandbox thread for big ones
 * (merge.ts, THREAD_MERGE_BYTES).
 */
export type ServerMerge =
  | { kind: "kernel"; kernel: string; params: Record<string, unknown> }
  | { kind: "numeric"; merge: NumericMerge; trim: number }
  | { kind: "bytes" };

/** The merged result's JSON text. Throws with a message for the consumer when the outputs do not fit the merge. */
export function mergeValues(how: ServerMerge, texts: string[]): string {
  const outputs = texts.map((t) => JSON.parse(t) as unknown);
  let value: unknown;
  if (how.kind === "kernel") {
    const kernel = getKernel(how.kernel);
    if (!kernel) throw new Error(`no kernel named ${how.kernel}`);
    value = kernel.reduce(how.params, outputs);
  } else if (how.kind === "numeric") {
    value = aggregate(how.merge, outputs, how.trim);
  } else {
    value = { b64: Buffer.concat(outputs.map((o) => Buffer.from((o as { b64: string }).b64, "base64"))).toString("base64") };
  }
  return JSON.stringify(value ?? null);
}
