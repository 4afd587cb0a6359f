import { router, createCallerFactory } from "./trpc";
import { jobsRouter } from "./routers/jobs";
import { accountRouter } from "./routers/account";
import { clusterRouter } from "./routers/cluster";
import { adminRouter } from "./routers/admin";
import { alertsRouter } from "./routers/alerts";
import { monitoringRouter } from "./routers/monitoring";

export const appRouter = router({
  jobs: jobsRouter,
  account: accountRouter,
  cluster: clusterRouter,
  admin: adminRouter,
  alerts: alertsRouter,
  monitoring: monitoringRouter,
});

export type AppRouter = typeof appRouter;
export const createCaller = createCallerFactory(appRouter);
