import { z } from "zod";
import { router, adminProcedure } from "../trpc";
import { banVolunteer, listVolunteers, unbanVolunteer } from "../../services/volunteers/admin";
import { listAllJobs } from "../../services/jobs/adminJobs";
import { listNodes } from "../../services/cluster/nodes";
import { grantCredits, listUsers, MAX_GRANT_CREDITS } from "../../services/users/adminUsers";

export const adminRouter = router({
  volunteers: adminProcedure
    .input(z.object({ search: z.string().max(100).optional(), limit: z.number().int().min(1).max(500).default(100) }).default({ limit: 100 }))
    .query(({ ctx, input }) => listVolunteers(ctx.deps, input)),
  ban: adminProcedure
    .input(z.object({ id: z.string().min(3).max(100), hours: z.number().positive().max(24 * 365), reason: z.string().trim().min(1).max(200) }))
    .mutation(({ ctx, input }) => banVolunteer(ctx.deps, input)),
  jobs: adminProcedure
    .input(
      z.object({
        search: z.string().max(100).optional(),
        state: z.enum(["running", "completed", "failed", "cancelled"]).optional(),
        limit: z.number().int().min(1).max(500).default(100),
      }).default({ limit: 100 }),
    )
    .query(({ ctx, input }) => listAllJobs(ctx.deps, input)),
  /** The nodes of the cluster, each with its volunteers, slices and health (one node alone). */
  nodes: adminProcedure.query(({ ctx }) => listNodes(ctx.deps)),
  unban: adminProcedure.input(z.object({ id: z.string().min(3).max(100) })).mutation(({ ctx, input }) => unbanVolunteer(ctx.deps, input.id)),
  users: adminProcedure
    .input(z.object({ search: z.string().max(100).optional(), limit: z.number().int().min(1).max(500).default(100) }).default({ limit: 100 }))
    .query(({ ctx, input }) => listUsers(ctx.deps, input)),
  /** Credits given to an account out of the system's grants, with what they are for. */
  grant: adminProcedure
    .input(z.object({
      userId: z.string().min(3).max(100),
      credits: z.number().min(0.001, "A grant is at least 0.001 credits.").max(MAX_GRANT_CREDITS, `A grant is at most ${MAX_GRANT_CREDITS.toLocaleString("en")} credits.`),
      memo: z.string().trim().min(1, "Say what the grant is for.").max(200),
    }))
    .mutation(({ ctx, input }) => grantCredits(ctx.deps.db, { userId: input.userId }, input.credits, input.memo)),
});
