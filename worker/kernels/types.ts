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
  /**
   * An iterative kernel: the job runs in rounds, each mapping over units whose inputs carry
   * the current state, with `step` (on the coordinator, trusted code) making the next state
   * from the round's validated outputs, until it says done or `maxRounds` rounds ran.
   */
  rounds?: KernelRounds<P, any, I, O, R>;
}

/** What the coordinator keeps of a finished round. */
export interface RoundRecord {
  round: number;
  /** The converging metric (null if not a finite number). */
  metric: number | null;
  latencyMs: number | null;
  stats?: Record<string, number>;
}

export interface RoundStep<S> {
  state: S;
  /** The number that shows convergence, one per round (k-means: the largest centroid shift). */
  metric: number;
  /** Stop here: converged (or the kernel's own round limit). */
  done: boolean;
  /** Other numbers worth showing per round (k-means: inertia). */
  stats?: Record<string, number>;
}

export interface KernelRounds<P, S, I, O, R> {
  /** Most rounds the job may run; the escrow holds this many rounds' worth. */
  maxRounds(params: P): number;
  /** The state the first round starts from. Deterministic. */
  init(params: P): S;
  /** Splits one round into `chunks` unit inputs (the state travels in each) with their work. */
  splitRound(params: P, state: S, chunks: number): Array<{ input: I; work: number }>;
  /** The next state from the round's outputs, in unit order; `round` counts from 1. */
  step(params: P, state: S, outputs: O[], round: number): RoundStep<S>;
  /** The job's result from the last state and every round's record. */
  finish(params: P, state: S, history: RoundRecord[]): R;
}
