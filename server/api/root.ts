import { router, createCallerFactory } from "./trpc";
import { jobsRouter } from "./routers/jobs";
import { accountRouter } from "./routers/account";
import { clusterRouter } from "./routers/cluster";
import { adminRouter } from "./routers/admin";
import { alertsRouter } from "./routers/alerts";
import { monitoringRouter } from "./routers/monitoring";
import { calcRouter } from "./routers/calc";

export const appRouter = router({
  jobs: jobsRouter,
  account: accountRouter,
  cluster: clusterRouter,
  admin: adminRouter,
  alerts: alertsRouter,
  monitoring: monitoringRouter,
  calc: calcRouter,
});

export type AppRouter = typeof appRouter;
export const createCaller = createCallerFactory(appRouter);
