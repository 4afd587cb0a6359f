import { z } from "zod";
import { router, protectedProcedure, publicProcedure } from "../trpc";
import { createUser, emailSchema, emailTaken, passwordSchema } from "../../services/users/users";
import { starterGrantAllowed } from "../../services/users/starterGrants";
import { createApiKey, listApiKeys, revokeApiKey } from "../../auth/apiKeys";
import { statement } from "../../services/credits/statement";
import { userAccount, MILLI } from "../../services/credits/accounts";
import { claimVolunteer, renameHost, userHosts, volunteerSummary } from "../../services/volunteers/volunteers";
import { volunteerIdSchema, volunteerTokenSchema } from "../../../worker/protocol/messages";
import { UserError } from "../../services/errors";

export const accountRouter = router({
  signUp: publicProcedure
    .input(z.object({ email: emailSchema, password: passwordSchema }))
    .mutation(async ({ ctx, input }) => {
      // A taken email is refused before it could use one of the address's grants (createUser checks again, atomically).
      if (await ctx.deps.db.user.findUnique({ where: { email: input.email }, select: { id: true } })) throw emailTaken();
      const granted = ctx.deps.env.STARTER_CREDITS > 0 && (await starterGrantAllowed(ctx.deps, ctx.ip));
      const user = await createUser(ctx.deps.db, input, granted ? Math.round(ctx.deps.env.STARTER_CREDITS * MILLI) : 0);
      return { ...user, starterCredits: granted ? ctx.deps.env.STARTER_CREDITS : 0 };
    }),
  me: publicProcedure.query(({ ctx }) => ctx.user),
  balance: protectedProcedure.query(async ({ ctx }) => (await statement(ctx.deps.db, userAccount(ctx.user.id), { limit: 0 })).balance),
  ledger: protectedProcedure
    .input(z.object({ limit: z.number().int().min(1).max(500).default(100), before: z.number().int().optional() }).default({ limit: 100 }))
    .query(({ ctx, input }) => statement(ctx.deps.db, userAccount(ctx.user.id), input)),
  apiKeys: protectedProcedure.query(({ ctx }) => listApiKeys(ctx.deps.db, ctx.user.id)),
  createApiKey: protectedProcedure
    .input(z.object({ name: z.string().trim().min(1, "Name the key.").max(60) }))
    .mutation(({ ctx, input }) => createApiKey(ctx.deps.db, ctx.user.id, input.name)),
  revokeApiKey: protectedProcedure.input(z.object({ id: z.string().max(64) })).mutation(async ({ ctx, input }) => {
    if (!(await revokeApiKey(ctx.deps.db, ctx.user.id, input.id))) throw new UserError("NOT_FOUND", "No such key.");
    // Volunteers signed in with it stop earning for the account, on every node.
    ctx.deps.coordinator.revokeKey(input.id);
    ctx.deps.cluster.bus.publish("revoke-key", input.id);
    return true;
  }),
  /** Credits a volunteer id is holding for whoever proves to own it (signed out volunteering). */
  volunteer: publicProcedure
    .input(z.object({ volunteerId: volunteerIdSchema }))
    .query(({ ctx, input }) => volunteerSummary(ctx.deps.db, input.volunteerId)),
  /** The user's hosts (volunteer ids that compute for this account), with their names. */
  hosts: protectedProcedure.query(({ ctx }) => userHosts(ctx.deps.db, ctx.user.id)),
  /** Names one of the user's hosts; the service says what is wrong with a name. */
  renameHost: protectedProcedure
    .input(z.object({ volunteerId: volunteerIdSchema, name: z.string().max(1000) }))
    .mutation(({ ctx, input }) => renameHost(ctx.deps.db, ctx.user.id, input.volunteerId, input.name)),
  claimVolunteer: protectedProcedure
    .input(z.object({ volunteerId: volunteerIdSchema, token: volunteerTokenSchema }))
    .mutation(({ ctx, input }) => claimVolunteer(ctx.deps.db, ctx.user.id, input.volunteerId, input.token)),
});
