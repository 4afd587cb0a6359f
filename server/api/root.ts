import { router, createCallerFactory } from "./trpc";
import { jobsRouter } from "./routers/jobs";
import { accountRouter } from "./routers/account";
import { clusterRouter } from "./routers/cluster";

export const appRouter = router({
  jobs: jobsRouter,
  account: accountRouter,
  cluster: clusterRouter,
});

export type AppRouter = typeof appRouter;
export const createCaller = createCallerFactory(appRouter);
