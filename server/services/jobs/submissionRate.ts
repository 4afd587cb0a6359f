import type { Env } from "../../env";
import type { AppDeps } from "../deps";
import type { CoordinatorObserver } from "../../monitoring/observer";
import type { Cluster } from "../../cluster/cluster";
import type { SharedLimiter } from "../../cluster/limiter";

// Job submissions per consumer: SUBMISSIONS_PER_SECOND sustained, SUBMISSION_BURST at once, one
// budget across every node of a cluster (Redis). A script looping on submit is told to retry
// later instead of filling the queue and the database for everyone else. One limiter per running
// server, keyed by its coordinator (tests run several servers in one process).

interface SubmissionLimit {
  limiter: SharedLimiter;
  /** Submissions being processed now, all consumers. */
  inFlight: number;
  /** Counts refusals in tabgrid_load_shed_total; absent for deps built without a server. */
  observer?: CoordinatorObserver;
}

const limits = new WeakMap<object, SubmissionLimit>();

/** Called by the server at start-up, so refusals are counted by its monitoring. */
export function limitSubmissions(coordinator: object, env: Pick<Env, "SUBMISSIONS_PER_SECOND" | "SUBMISSION_BURST">, observer: CoordinatorObserver, cluster: Cluster) {
  limits.set(coordinator, { limiter: cluster.limiter("submit", env.SUBMISSIONS_PER_SECOND, env.SUBMISSION_BURST), inFlight: 0, observer });
}

/**
 * Server-wide: past this many submissions in progress (waiting on the database), or while the
 * commit backlog is long, new ones are refused at once instead of queueing until clients time
 * out and the server stops answering anything else (found by `npm run stress`).
 */
export const MAX_SUBMISSIONS_IN_FLIGHT = 32;
const MAX_COMMIT_BACKLOG = 20_000;

function limitOf(deps: Pick<AppDeps, "coordinator" | "env" | "cluster">): SubmissionLimit {
  let l = limits.get(deps.coordinator);
  if (!l) limits.set(deps.coordinator, (l = { limiter: deps.cluster.limiter("submit", deps.env.SUBMISSIONS_PER_SECOND, deps.env.SUBMISSION_BURST), inFlight: 0 }));
  return l;
}

/** Takes one submission from `userId`'s bucket; false (and counted as shed) when it is empty. */
export async function submissionAllowed(deps: Pick<AppDeps, "coordinator" | "env" | "cluster">, userId: string): Promise<boolean> {
  const l = limitOf(deps);
  if (await l.limiter.take(userId)) return true;
  l.observer?.shed("submission-throttled");
  return false;
}

/** Runs a submission unless the server is saturated (then `undefined`, counted as shed). */
export async function admitSubmission<T>(deps: Pick<AppDeps, "coordinator" | "env" | "cluster">, run: () => Promise<T>): Promise<{ value: T } | undefined> {
  const l = limitOf(deps);
  if (l.inFlight >= MAX_SUBMISSIONS_IN_FLIGHT || deps.coordinator.commitBacklog() > MAX_COMMIT_BACKLOG) {
    l.observer?.shed("submission-throttled");
    return undefined;
  }
  l.inFlight++;
  try {
    return { value: await run() };
  } finally {
    l.inFlight--;
  }
}
