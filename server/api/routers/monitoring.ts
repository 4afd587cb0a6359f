import { on } from "node:events";
import { z } from "zod";
import { router, adminProcedure } from "../trpc";
import type { Sample } from "../../monitoring/series";

export const monitoringRouter = router({
  /** Samples of the last `minutes` (full resolution for the last hour, one a minute before). */
  history: adminProcedure
    .input(z.object({ minutes: z.number().int().min(1).max(7 * 24 * 60).default(60) }).default({ minutes: 60 }))
    .query(async ({ ctx, input }) => ({
      samples: await ctx.deps.monitoring.sampler.longHistory(Date.now() - input.minutes * 60_000),
      queues: ctx.deps.coordinator.queues(),
    })),
  /** Every new sample as it is taken, with the queue of each running job. */
  live: adminProcedure.subscription(async function* ({ ctx, signal }) {
    try {
      for await (const [sample] of on(ctx.deps.monitoring.sampler, "sample", { signal }) as AsyncIterable<[Sample]>) {
        yield { sample, queues: ctx.deps.coordinator.queues() };
      }
    } catch (e) {
      if (!signal?.aborted) throw e; // the page went away: not an error
    }
  }),
});
