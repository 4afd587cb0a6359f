import { z } from "zod";
import { router, adminProcedure } from "../trpc";
import { listReports, readReport } from "../../services/reports/reports";

/** Benchmark and stress reports from REPORTS_DIR (/admin/reports). */
export const reportsRouter = router({
  list: adminProcedure.query(({ ctx }) => listReports(ctx.deps.env)),
  // The service checks the name's pattern; this only bounds the input.
  get: adminProcedure.input(z.object({ name: z.string().min(1).max(100) })).query(({ ctx, input }) => readReport(ctx.deps.env, input.name)),
});
