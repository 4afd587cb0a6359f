import type { AppDeps } from "../deps";

/** Every job, newest first, searchable by id, kernel or owner email, for the admin. */
export async function listAllJobs(deps: AppDeps, opts: { search?: string; state?: string; limit: number }) {
  const search = opts.search?.trim();
  const jobs = await deps.db.job.findMany({
    where: {
      ...(opts.state ? { state: opts.state } : {}),
      ...(search ? { OR: [{ id: { contains: search } }, { kernel: { contains: search } }, { owner: { email: { contains: search } } }] } : {}),
    },
    select: {
      id: true, kernel: true, state: true, chunks: true, unitsDone: true, estimate: true, cost: true, replicas: true,
      quorum: true, error: true, createdAt: true, finishedAt: true, owner: { select: { email: true } },
    },
    orderBy: { createdAt: "desc" },
    take: opts.limit,
  });
  return jobs.map(({ owner, ...j }) => {
    const live = deps.coordinator.progress(j.id);
    return { ...j, owner: owner.email, done: live?.done ?? j.unitsDone, queued: live?.queued ?? 0, running: live?.running ?? 0 };
  });
}
