import type { z } from "zod";

/**
 * A built-in kernel: how a job's parameters split into unit inputs (server side), how one
 * unit is computed (volunteer side, browser or Node, deterministic for a given input),
 * and how the ordered unit outputs merge into the job's result (server side).
 */
export interface Kernel<P = any, I = any, O = any, R = any> {
  name: string;
  title: string;
  description: string;
  /** Validates and defaults the consumer's parameters. */
  params: z.ZodType<P>;
  /** Validates a volunteer's output at the server edge; never trust a volunteer. */
  output: z.ZodType<O>;
  /** Largest chunk count that makes sense for these params (e.g. rows of an image). */
  maxChunks(params: P): number;
  /** Splits the job into `chunks` unit inputs with their estimated work (reference CPU-ms). */
  split(params: P, chunks: number): Array<{ input: I; work: number }>;
  /** Computes one unit. Pure and deterministic: the same input gives the same output. */
  run(params: P, input: I): O;
  /** Merges unit outputs, given in unit order. */
  reduce(params: P, outputs: O[]): R;
}
