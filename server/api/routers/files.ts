import { z } from "zod";
import { router, protectedProcedure } from "../trpc";
import { deleteDataFile, deleteProgram, listFiles } from "../../services/programs/files";

// Checked again (with a clearer message) by the service; this bounds what is parsed.
const hash = z.object({ hash: z.string().max(64) });

/** The caller's programs and data files: what they take of the quota, and deleting them. */
export const filesRouter = router({
  list: protectedProcedure.query(({ ctx }) => listFiles(ctx.deps, ctx.user.id)),
  deleteData: protectedProcedure.input(hash).mutation(({ ctx, input }) => deleteDataFile(ctx.deps, ctx.user.id, input.hash)),
  deleteProgram: protectedProcedure.input(hash).mutation(({ ctx, input }) => deleteProgram(ctx.deps, ctx.user.id, input.hash)),
});
