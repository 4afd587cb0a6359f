import type { ResultRef } from "../scheduler/types";

// What audits of one job have found, and what a failed audit does. The server's recompute of a
// consumer's program (QuickJS) is no proof against a volunteer: a program may compute
// differently there on purpose (Intl is missing, a sort with an inconsistent comparator orders
// differently, a switch on the round or the clock), and banning on it let a consumer get honest
// volunteers banned, their accounts' results voided everywhere. Asking other accounts to
// corroborate the server did not help: a program reproducible until round N and not after
// passes that test honestly. So a failed audit only keeps the volunteer's account from the job's
// units (and counts an invalid result on its record, which raises its checks elsewhere); the
// robust merge bounds what it sent meanwhile. If the server disagreed with two signed-in
// accounts and agreed with none, the program is what differs: its audits stop and the accounts
// are let back. Anonymous volunteers are barred like anyone but are no such evidence: their
// ids cost nothing, and three of them from one address switched a training job's audits off
// and then set its weights.

/** Signed-in accounts disputed, with none agreeing, after which a job's program is taken as not reproducible. */
export const IRREPRODUCIBLE_AFTER = 2;
/** A job's evidence is forgotten after this long without an audit (the job ended or stalled). */
const FORGET_MS = 30 * 60_000;

/** A volunteer signed in to an account (`user:<id>`), not an anonymous id (`anon:<volunteer>`). */
const isSignedIn = (account: string) => account.startsWith("user:");

export type AuditDecision =
  | { kind: "wait" }
  | { kind: "bar"; account: string }
  | { kind: "irreproducible"; reason: string };

interface JobEvidence {
  agreed: Set<string>;
  disputed: Set<string>;
  /** Set once the job's audits stopped: why. */
  off?: string;
  touched: number;
}

export class AuditEvidence {
  private readonly jobs = new Map<string, JobEvidence>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Why the job's audits stopped, or undefined while they go on. */
  stopped(jobId: string): string | undefined {
    return this.jobs.get(jobId)?.off;
  }

  agreed(jobId: string, ref: ResultRef): AuditDecision {
    const e = this.of(jobId);
    e.agreed.add(ref.account);
    return { kind: "wait" };
  }

  disputed(jobId: string, ref: ResultRef): AuditDecision {
    const e = this.of(jobId);
    if (e.off) return { kind: "wait" };
    const known = e.disputed.has(ref.account);
    e.disputed.add(ref.account);
    const signedIn = [...e.disputed].filter(isSignedIn).length;
    if (signedIn >= IRREPRODUCIBLE_AFTER && ![...e.agreed].some((a) => !e.disputed.has(a))) {
      e.off = `the server's own computation of its program disagreed with the results of ${signedIn} signed-in accounts' volunteers and agreed with none: the program does not compute the same output everywhere (Math.random, Date, Intl or a check of its environment), so its results cannot be audited`;
      return { kind: "irreproducible", reason: e.off };
    }
    return known ? { kind: "wait" } : { kind: "bar", account: ref.account };
  }

  private of(jobId: string): JobEvidence {
    const now = this.now();
    let e = this.jobs.get(jobId);
    if (!e) {
      for (const [id, old] of this.jobs) if (now - old.touched > FORGET_MS) this.jobs.delete(id);
      e = { agreed: new Set(), disputed: new Set(), touched: now };
      this.jobs.set(jobId, e);
    }
    e.touched = now;
    return e;
  }
}
