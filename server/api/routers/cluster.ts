import { router, publicProcedure } from "../trpc";
import { changes } from "../changes";

export const clusterRouter = router({
  status: publicProcedure.query(({ ctx }) => ctx.deps.coordinator.status()),
  /** Cluster snapshot on every change, at most twice a second. */
  watch: publicProcedure.subscription(async function* ({ ctx, signal }) {
    const updates = changes(ctx.deps.coordinator, "tick", () => true, { signal, minGapMs: 500 });
    try {
      yield ctx.deps.coordinator.status();
      for await (const _ of updates) yield ctx.deps.coordinator.status();
    } finally {
      updates.close();
    }
  }),
});
