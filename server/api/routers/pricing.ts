import { z } from "zod";
import { router, adminProcedure } from "../trpc";
import { getPricing, priceSchema, setPrice } from "../../services/pricing/pricing";

export const pricingRouter = router({
  get: adminProcedure.query(({ ctx }) => getPricing(ctx.deps)),
  set: adminProcedure.input(z.object({ pricePerCpuSecond: priceSchema })).mutation(({ ctx, input }) => setPrice(ctx.deps, input.pricePerCpuSecond)),
});
