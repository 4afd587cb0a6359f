import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { CalcError, evaluate, type CalcResult } from "../../../worker/interactive/calc";
import { InteractiveError, type InteractiveOutcome } from "../../coordinator/interactive";
import type { Coordinator } from "../../coordinator/coordinator";
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

/** Relative difference two engines' `a ** b` may show in their last bits. */
const AGREE_RELATIVE = 1e-12;

/**
 * Evaluates an arithmetic expression on a volunteer. Malformed expressions are refused here,
 * before anything is routed; the volunteer's evaluation reports math errors (division by zero).
 * Routing failures (no volunteers, no answer) stay InteractiveErrors for the router to map.
 *
 * The answer is checked against the server's own evaluation (at most 1,000 characters of
 * arithmetic: microseconds): a stranger's socket that reported itself idle answered every
 * call with 1337. What the caller is shown is the server's operations, and its value when the
 * volunteer's differs from it.
 */
export async function evaluateExpression(deps: AppDeps, expression: string): Promise<CalcAnswer> {
  let own: CalcResult | CalcError;
  try {
    own = evaluate(expression);
  } catch (e) {
    if (!(e instanceof CalcError)) throw e;
    if (e.kind !== "math") throw new UserError("BAD_REQUEST", e.message);
    own = e;
  }
  try {
    // In a cluster, a node without volunteers of its own asks one that has some.
    const r = deps.elsewhere && deps.coordinator.volunteers().length === 0
      ? await deps.elsewhere.calc({ expression })
      : await calcOnVolunteer(deps.coordinator, expression, own instanceof CalcError ? undefined : own);
    const ms = Math.round(r.ms * 100) / 100;
    if (own instanceof CalcError) {
      console.warn(`calc: volunteer ${r.volunteerId} answered ${r.value} where the expression fails (${own.message})`);
      throw new UserError("BAD_REQUEST", own.message);
    }
    if (!agrees(r.value, own.value)) return { expression, value: own.value, ops: own.ops, volunteerId: "the server", ms };
    return { expression, value: r.value, ops: own.ops, volunteerId: r.volunteerId, ms };
  } catch (e) {
    // No volunteer answered in time (or every one online lately let a task time out): the
    // server's own evaluation answers, so silent sockets cannot take calc away from everyone.
    if (e instanceof InteractiveError && e.code === "timeout") {
      if (own instanceof CalcError) throw new UserError("BAD_REQUEST", own.message);
      return { expression, value: own.value, ops: own.ops, volunteerId: "the server", ms: 0 };
    }
    if (e instanceof InteractiveError && e.code === "evaluation") {
      // The volunteer says it fails: the server's own evaluation says whether it does.
      if (own instanceof CalcError) throw new UserError("BAD_REQUEST", own.message);
      console.warn(`calc: a volunteer said "${e.message.slice(0, 200)}" where the expression is ${own.value}; the server's answer is given`);
      return { expression, value: own.value, ops: own.ops, volunteerId: "the server", ms: 0 };
    }
    throw e;
  }
}

/**
 * The expression on one of this node's volunteers (the node that holds its socket: in a cluster,
 * the node a calculation was handed to runs this too). A value the server's own evaluation
 * proves wrong is a lie, as a failed spot-check is: the volunteer is banned with its account,
 * and what it returned is backtracked. Only a value against a value: an error where the server
 * computes one, or a value where the server's fails, may be an older volunteer's evaluator, and
 * is replaced without a ban.
 */
export async function calcOnVolunteer(coordinator: Coordinator, expression: string, own = ownValue(expression)): Promise<InteractiveOutcome> {
  const r = await coordinator.interactive.run("calc", { expression });
  if (own && !agrees(r.value, own.value)) {
    const reason = `answered a calculation wrong: ${JSON.stringify(expression.length > 80 ? `${expression.slice(0, 80)}…` : expression)} is ${own.value}, not ${r.value}`;
    console.warn(`calc: volunteer ${r.volunteerId} ${reason}; banned, and the server's answer is given`);
    coordinator.caughtInteractive(r.key, r.volunteerId, reason);
  }
  return r;
}

/** The server's own value of the expression; undefined where its evaluation fails. */
function ownValue(expression: string): CalcResult | undefined {
  try {
    return evaluate(expression);
  } catch {
    return undefined;
  }
}

function agrees(a: number, b: number): boolean {
  return a === b || Math.abs(a - b) <= AGREE_RELATIVE * Math.max(Math.abs(a), Math.abs(b));
}
