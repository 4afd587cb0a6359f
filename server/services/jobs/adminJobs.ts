import type { AppDeps } from "../deps";
import { maxRoundsOf } from "./rounds";
import { containsAnyCase } from "../../store/prisma";

/** Every job, newest first, searchable by id, kernel or owner email, for the admin. */
export async function listAllJobs(deps: AppDeps, opts: { search?: string; state?: string; limit: number }) {
  const search = opts.search?.trim();
  const like = search ? containsAnyCase(deps.db, search) : undefined;
  const jobs = await deps.db.job.findMany({
    where: {
      ...(opts.state ? { state: opts.state } : {}),
      ...(like ? { OR: [{ id: like }, { kernel: like }, { owner: { email: like } }] } : {}),
    },
    select: {
      id: true, kernel: true, state: true, chunks: true, unitsDone: true, estimate: true, cost: true, replicas: true,
      quorum: true, error: true, createdAt: true, finishedAt: true, params: true, owner: { select: { email: true } },
      _count: { select: { rounds: true } },
    },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: opts.limit,
  });
  // An iterative job's chunks are its units per round, and its units done count every round:
  // it shows its current (or last) round's units, the rounds before it being all done.
  return jobs.map(({ owner, params, _count, ...j }) => {
    const live = deps.coordinator.progress(j.id);
    const round = _count.rounds > 0 ? _count.rounds : null;
    const done = live?.done ?? (round ? j.unitsDone - j.chunks * (round - 1) : j.unitsDone);
    return {
      ...j, owner: owner.email, done, queued: live?.queued ?? 0, running: live?.running ?? 0,
      /** Iterative jobs: the current (or last) round and the most rounds; null for one-shot jobs. */
      round, maxRounds: round ? maxRoundsOf(j.kernel, params) : null,
    };
  });
}
