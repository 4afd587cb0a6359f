import { z } from "zod";
import { router, protectedProcedure, publicProcedure } from "../trpc";
import { leaderboard, rankBySchema, userHistory, windowSchema } from "../../services/leaderboard/leaderboard";

export const leaderboardRouter = router({
  /** Public: hosts and teams by credits or validated results in a window (no emails). */
  get: publicProcedure
    .input(z.object({ window: windowSchema.default("all"), by: rankBySchema.default("credits") }).prefault({}))
    .query(({ ctx, input }) => leaderboard(ctx.deps.db, input.window, input.by)),
  /** The signed-in user's payouts per day (last 30 days) and their hosts' validated results. */
  me: protectedProcedure.query(({ ctx }) => userHistory(ctx.deps.db, ctx.user.id)),
});
