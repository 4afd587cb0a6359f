import { router, createCallerFactory } from "./trpc";
import { jobsRouter } from "./routers/jobs";
import { accountRouter } from "./routers/account";
import { clusterRouter } from "./routers/cluster";
import { adminRouter } from "./routers/admin";
import { alertsRouter } from "./routers/alerts";
import { monitoringRouter } from "./routers/monitoring";
import { calcRouter } from "./routers/calc";
import { pricingRouter } from "./routers/pricing";
import { leaderboardRouter } from "./routers/leaderboard";
import { teamsRouter } from "./routers/teams";
import { adsRouter } from "./routers/ads";
import { reportsRouter } from "./routers/reports";
import { filesRouter } from "./routers/files";

export const appRouter = router({
  jobs: jobsRouter,
  account: accountRouter,
  cluster: clusterRouter,
  admin: adminRouter,
  alerts: alertsRouter,
  monitoring: monitoringRouter,
  calc: calcRouter,
  pricing: pricingRouter,
  leaderboard: leaderboardRouter,
  teams: teamsRouter,
  ads: adsRouter,
  reports: reportsRouter,
  files: filesRouter,
});

export type AppRouter = typeof appRouter;
export const createCaller = createCallerFactory(appRouter);
