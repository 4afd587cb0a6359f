import type { Env } from "../../env";
import type { AppDeps } from "../deps";
import type { CoordinatorObserver } from "../../monitoring/observer";
import { RateLimiter } from "../calc/rateLimit";

// Job submissions per consumer: SUBMISSIONS_PER_SECOND sustained, SUBMISSION_BURST at once. A
// script looping on submit is told to retry later instead of filling the queue and the database
// for everyone else. One limiter per running server, keyed by its coordinator (tests run several
// servers in one process).

interface SubmissionLimit {
  limiter: RateLimiter;
  /** Counts refusals in tabgrid_load_shed_total; absent for deps built without a server. */
  observer?: CoordinatorObserver;
}

const limits = new WeakMap<object, SubmissionLimit>();

/** Called by the server at start-up, so refusals are counted by its monitoring. */
export function limitSubmissions(coordinator: object, env: Pick<Env, "SUBMISSIONS_PER_SECOND" | "SUBMISSION_BURST">, observer: CoordinatorObserver) {
  limits.set(coordinator, { limiter: new RateLimiter(env.SUBMISSIONS_PER_SECOND, env.SUBMISSION_BURST), observer });
}

/** Takes one submission from `userId`'s bucket; false (and counted as shed) when it is empty. */
export function submissionAllowed(deps: Pick<AppDeps, "coordinator" | "env">, userId: string): boolean {
  let l = limits.get(deps.coordinator);
  if (!l) limits.set(deps.coordinator, (l = { limiter: new RateLimiter(deps.env.SUBMISSIONS_PER_SECOND, deps.env.SUBMISSION_BURST) }));
  if (l.limiter.take(userId)) return true;
  l.observer?.shed("submission-throttled");
  return false;
}
