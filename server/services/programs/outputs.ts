import { z } from "zod";
import { getKernel } from "../../../worker/kernels";

const wasmOutput = z.object({ b64: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, "base64") }).strict();
const jsOutput = z.unknown().refine((v) => v !== undefined, "a program's run must return a value");

/** How a job's outputs are checked at the server edge before they count toward a quorum. */
export function outputSchemaFor(kernel: string, params: unknown): z.ZodType | undefined {
  if (kernel !== "program") return getKernel(kernel)?.output;
  return (params as { program?: { kind?: string } }).program?.kind === "wasm" ? wasmOutput : jsOutput;
}

/** A program job's own bound on one unit's output (submit.ts, outputLimitBytes), if it set one. */
export function outputLimitOf(params: unknown): number | undefined {
  const bytes = (params as { limits?: { outputBytes?: unknown } } | null)?.limits?.outputBytes;
  return typeof bytes === "number" && bytes > 0 ? bytes : undefined;
}
