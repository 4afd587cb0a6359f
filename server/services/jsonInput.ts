import { z } from "zod";
import { checkJsonBounds, CONSUMER_INPUT_LIMITS } from "../../worker/protocol/jsonBounds";

// A consumer's free-form JSON (a job's params, a program's input items) reaches JSON.stringify
// and the volunteers as it was sent: its bounds are checked in the schema, so a value over
// them is a BAD_REQUEST naming the field and the reason, never a stack overflow later on.

/** A zod check: the value is within CONSUMER_INPUT_LIMITS. */
export function withinJsonBounds(value: unknown, ctx: z.RefinementCtx) {
  const why = checkJsonBounds(value, CONSUMER_INPUT_LIMITS);
  if (why !== null) ctx.addIssue({ code: "custom", message: why });
}

/**
 * A JSON object kept exactly as sent, every key included (z.record would silently drop a
 * "__proto__" key rather than refuse it), once within bounds.
 */
export const jsonObjectSchema = z.custom<Record<string, unknown>>().superRefine((value, ctx) => {
  if (value === null || typeof value !== "object" || Array.isArray(value)) ctx.addIssue({ code: "custom", message: "must be a JSON object" });
  else withinJsonBounds(value, ctx);
});
