import type { AppDeps } from "../deps";
import type { SharedLimiter } from "../../cluster/limiter";
import { addressKey } from "../../coordinator/network";

// Sign-up is open and free, and each new account got STARTER_CREDITS: a script signing up
// fifty accounts a second from one address collected credits without limit (and with them
// the volunteers' work). Now only the first STARTER_GRANTS_PER_ADDRESS sign-ups a day from one
// address get the grant; later ones still get an account, starting at 0 credits (volunteering
// and ads earn more). Buckets live in Redis in cluster mode, so every node counts together.

const DAY_S = 24 * 60 * 60;
const limiters = new WeakMap<object, SharedLimiter>();

/** Whether a sign-up from this address gets the starter grant now (taking one of its grants if so). */
export function starterGrantAllowed(deps: Pick<AppDeps, "env" | "cluster" | "coordinator">, ip: string): Promise<boolean> {
  const perDay = deps.env.STARTER_GRANTS_PER_ADDRESS;
  let l = limiters.get(deps.coordinator);
  if (!l) limiters.set(deps.coordinator, (l = deps.cluster.limiter("starter-grants", perDay / DAY_S, perDay)));
  return l.take(addressKey(ip));
}
