import { z } from "zod";
import { TRPCError } from "@trpc/server";
import { router, publicProcedure } from "../trpc";
import { calcAllowed, evaluateExpression } from "../../services/calc/calc";
import { InteractiveError } from "../../coordinator/interactive";

export const calcRouter = router({
  /** `2*(3+4)/5` → 2.8, computed by the least loaded of two random volunteers. */
  evaluate: publicProcedure.input(z.object({ expression: z.string().max(10_000) })).mutation(async ({ ctx, input }) => {
    if (!(await calcAllowed(ctx.deps, ctx.user?.id ?? null, ctx.ip))) {
      throw new TRPCError({ code: "TOO_MANY_REQUESTS", message: "too many calculations; slow down a little" });
    }
    try {
      return await evaluateExpression(ctx.deps, input.expression);
    } catch (e) {
      if (e instanceof InteractiveError) {
        throw new TRPCError({ code: e.code === "timeout" ? "GATEWAY_TIMEOUT" : "SERVICE_UNAVAILABLE", message: e.message, cause: e });
      }
      throw e;
    }
  }),
});
