import { z } from "zod";
import { router, protectedProcedure, publicProcedure } from "../trpc";
import { createTeam, joinTeam, leaveTeam, listTeams, myTeam, teamNameSchema } from "../../services/teams/teams";

export const teamsRouter = router({
  list: publicProcedure.query(({ ctx }) => listTeams(ctx.deps.db)),
  mine: protectedProcedure.query(({ ctx }) => myTeam(ctx.deps.db, ctx.user.id)),
  create: protectedProcedure.input(z.object({ name: teamNameSchema })).mutation(({ ctx, input }) => createTeam(ctx.deps.db, ctx.user.id, input.name)),
  join: protectedProcedure.input(z.object({ id: z.string().min(1).max(64) })).mutation(({ ctx, input }) => joinTeam(ctx.deps.db, ctx.user.id, input.id)),
  leave: protectedProcedure.mutation(({ ctx }) => leaveTeam(ctx.deps.db, ctx.user.id)),
});
