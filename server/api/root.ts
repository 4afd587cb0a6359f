import { router, createCallerFactory } from "./trpc";
import { jobsRouter } from "./routers/jobs";
import { accountRouter } from "./routers/account";
import { clusterRouter } from "./routers/cluster";
import { adminRouter } from "./routers/admin";

export const appRouter = router({
  jobs: jobsRouter,
  account: accountRouter,
  cluster: clusterRouter,
  admin: adminRouter,
});

export type AppRouter = typeof appRouter;
export const createCaller = createCallerFactory(appRouter);
