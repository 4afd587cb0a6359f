import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { checkExpression } from "../../../worker/interactive/calc";
import { InteractiveError } from "../../coordinator/interactive";
import type { SharedLimiter } from "../../cluster/limiter";
import { addressKey } from "../../coordinator/network";

export interface CalcAnswer {
  expression: string;
  value: number;
  /** The operations the volunteer ran, in order ("3 + 4 = 7"). */
  ops: string[];
  volunteerId: string;
  /** Milliseconds from routing to the answer. */
  ms: number;
}

// One limiter per running server (tests run several in one process).
const limiters = new WeakMap<object, { user: SharedLimiter; address: SharedLimiter; anonymous: SharedLimiter }>();

/**
 * False when the caller asked too often: a user by its account; an anonymous caller by its
 * network address, then all of them together (one anonymous client used to spend the budget
 * every anonymous caller shared).
 */
export async function calcAllowed(deps: AppDeps, userId: string | null, ip: string): Promise<boolean> {
  let l = limiters.get(deps.coordinator);
  if (!l) {
    l = { user: deps.cluster.limiter("calc", 20, 60), address: deps.cluster.limiter("calc-address", 20, 60), anonymous: deps.cluster.limiter("calc-anonymous", 50, 150) };
    limiters.set(deps.coordinator, l);
  }
  if (userId) return l.user.take(userId);
  return (await l.address.take(addressKey(ip))) && l.anonymous.take("anonymous");
}

/**
 * Evaluates an arithmetic expression on a volunteer. Malformed expressions are refused here,
 * before anything is routed; the volunteer's evaluation reports math errors (division by zero).
 * Routing failures (no volunteers, no answer) stay InteractiveErrors for the router to map.
 */
export async function evaluateExpression(deps: AppDeps, expression: string): Promise<CalcAnswer> {
  const problem = checkExpression(expression);
  if (problem) throw new UserError("BAD_REQUEST", problem);
  try {
    // In a cluster, a node without volunteers of its own asks one that has some.
    const r = deps.elsewhere && deps.coordinator.volunteers().length === 0
      ? await deps.elsewhere.calc({ expression })
      : await deps.coordinator.interactive.run("calc", { expression });
    return { expression, value: r.value, ops: r.ops, volunteerId: r.volunteerId, ms: Math.round(r.ms * 100) / 100 };
  } catch (e) {
    if (e instanceof InteractiveError && e.code === "evaluation") throw new UserError("BAD_REQUEST", e.message);
    throw e;
  }
}
