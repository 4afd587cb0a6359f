import { z } from "zod";
import { router, protectedProcedure, adminProcedure } from "../trpc";
import { startAd, heartbeat, claimAd, cancelAd } from "../../services/ads/sessions";
import { listCreatives, createCreative, updateCreative, deleteCreative, creativeInput, creativeUpdate } from "../../services/ads/creatives";

const session = z.object({ sessionId: z.string().min(1).max(64) });

export const adsRouter = router({
  /** Opens an ad session and picks a creative. */
  start: protectedProcedure.mutation(({ ctx }) => startAd(ctx.deps, ctx.user.id, ctx.ip)),
  /** Every second from the player; `visible` = the tab is visible and focused. */
  heartbeat: protectedProcedure
    .input(session.extend({ visible: z.boolean() }))
    .mutation(({ ctx, input }) => heartbeat(ctx.deps, ctx.user.id, input.sessionId, input.visible)),
  claim: protectedProcedure.input(session).mutation(({ ctx, input }) => claimAd(ctx.deps, ctx.user.id, input.sessionId)),
  cancel: protectedProcedure.input(session).mutation(({ ctx, input }) => cancelAd(ctx.deps, ctx.user.id, input.sessionId)),
  creatives: router({
    list: adminProcedure.query(({ ctx }) => listCreatives(ctx.deps)),
    create: adminProcedure.input(creativeInput).mutation(({ ctx, input }) => createCreative(ctx.deps, input)),
    update: adminProcedure.input(creativeUpdate).mutation(({ ctx, input }) => updateCreative(ctx.deps, input)),
    delete: adminProcedure.input(z.object({ id: z.string() })).mutation(({ ctx, input }) => deleteCreative(ctx.deps, input.id)),
  }),
});
