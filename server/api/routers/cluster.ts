import { router, publicProcedure } from "../trpc";
import { changes } from "../changes";
import { clusterStatus } from "../../services/cluster/nodes";

export const clusterRouter = router({
  status: publicProcedure.query(({ ctx }) => clusterStatus(ctx.deps)),
  /** Cluster snapshot on every change, at most twice a second. */
  watch: publicProcedure.subscription(async function* ({ ctx, signal }) {
    const updates = changes(ctx.deps.coordinator, "tick", () => true, { signal, minGapMs: 500 });
    try {
      yield await clusterStatus(ctx.deps);
      for await (const _ of updates) yield await clusterStatus(ctx.deps);
    } finally {
      updates.close();
    }
  }),
});
