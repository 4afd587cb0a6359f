import { z } from "zod";
import { CALC_MAX_LENGTH, evaluate, formatNumber } from "./calc";

// Interactive kernels: tiny, trusted, built-in computations a volunteer answers at once on
// its main thread (no worker, no queue), for requests that want an answer in milliseconds.

export const interactiveKernelSchema = z.enum(["calc"]);
export type InteractiveKernel = z.infer<typeof interactiveKernelSchema>;

export const calcInputSchema = z.object({ expression: z.string().min(1).max(CALC_MAX_LENGTH) });
export type CalcInput = z.infer<typeof calcInputSchema>;

export interface InteractiveAnswer {
  value: number;
  ops: string[];
}

/** Runs an interactive kernel; throws an Error whose message is meant for the user. */
export function runInteractive(kernel: string, input: unknown): InteractiveAnswer {
  if (kernel !== "calc") throw new Error(`unknown interactive kernel "${kernel}"`);
  const parsed = calcInputSchema.safeParse(input);
  if (!parsed.success) throw new Error(`invalid calc input: ${parsed.error.issues[0].message}`);
  return evaluate(parsed.data.expression);
}

/** What the volunteer logs about one interactive task (and shows on its page). */
export function describeInteractive(kernel: string, input: unknown, answer: { value?: number; ops?: string[]; error?: string }): string {
  const what = kernel === "calc" ? (input as CalcInput)?.expression : JSON.stringify(input);
  if (answer.error !== undefined) return `${kernel} ${what}: ${answer.error}`;
  return `${kernel} ${what} = ${answer.value === undefined ? "?" : formatNumber(answer.value)}${answer.ops?.length ? `: ${answer.ops.join(", ")}` : ""}`;
}
