// Merges for numeric outputs, computed by the server itself: each unit's output is an array
// of finite numbers (a gradient, a histogram, partial sums), all of one length. The robust
// ones (median, trimmed mean) are how data-parallel training tolerates a few volunteers that
// send garbage: gradients differ from shard to shard, so they cannot be checked by comparing
// replicas the way exact outputs can.

export const NUMERIC_MERGES = ["mean", "median", "trimmed-mean"] as const;
export type NumericMerge = (typeof NUMERIC_MERGES)[number];

export const isNumericMerge = (m: string | null | undefined): m is NumericMerge => (NUMERIC_MERGES as readonly string[]).includes(m ?? "");

/** The default share of values dropped at each end by trimmed-mean. */
export const DEFAULT_TRIM = 0.1;

/** Checks that every output is an array of finite numbers of one length; returns them typed. */
export function numericOutputs(outputs: unknown[]): number[][] {
  if (!outputs.length) throw new Error("there are no outputs to merge");
  const width = Array.isArray(outputs[0]) ? outputs[0].length : -1;
  outputs.forEach((o, i) => {
    if (!Array.isArray(o)) throw new Error(`output ${i} is not an array of numbers (a numeric merge needs one from every unit)`);
    if (o.length !== width) throw new Error(`output ${i} has ${o.length} numbers, output 0 has ${width}: they must all be as long`);
    for (const x of o) if (typeof x !== "number" || !Number.isFinite(x)) throw new Error(`output ${i} holds ${JSON.stringify(x)}, not a finite number`);
  });
  return outputs as number[][];
}

/** How many values trimmed-mean drops at each end of n: ceil(trim × n), leaving at least one. */
export function trimCount(n: number, trim: number): number {
  return Math.min(Math.ceil(trim * n - 1e-9), Math.floor((n - 1) / 2));
}

/**
 * Coordinate-wise merge of numeric outputs. Each coordinate's values are sorted ascending and
 * summed in that order, so the result depends only on the set of outputs, not on the order
 * they arrived in (a reference run in one process gets the very same bits).
 */
export function aggregate(kind: NumericMerge, outputs: unknown[], trim = DEFAULT_TRIM): number[] {
  const rows = numericOutputs(outputs);
  const n = rows.length;
  const width = rows[0].length;
  const out = new Array<number>(width);
  const column = new Float64Array(n);
  const k = kind === "trimmed-mean" ? trimCount(n, trim) : 0;
  for (let j = 0; j < width; j++) {
    for (let i = 0; i < n; i++) column[i] = rows[i][j];
    column.sort();
    if (kind === "median") {
      out[j] = n % 2 ? column[(n - 1) / 2] : (column[n / 2 - 1] + column[n / 2]) / 2;
      continue;
    }
    let sum = 0;
    for (let i = k; i < n - k; i++) sum += column[i];
    out[j] = sum / (n - 2 * k);
  }
  return out;
}
