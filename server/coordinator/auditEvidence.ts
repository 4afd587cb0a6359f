import type { ResultRef } from "../scheduler/types";

// What audits of one job have found, and when a failed audit may ban. The server's recompute
// of a JS program (QuickJS) is only the truth for programs that compute the same everywhere:
// one that reads Math.random, Date, Intl or anything of its environment differs from every
// volunteer's V8, and banning on that alone let any consumer get honest volunteers banned (and
// their results backtracked) with a one-line program. So a disagreement waits for corroboration:
// the server agreed with volunteers of at least two other accounts on the same job, and with
// more of them than disagreed. If it disagreed with two accounts and agreed with none, the
// program is what differs: its audits stop, and nobody is banned.

/** Accounts whose agreement bans a disputed result: at least this many, and more than the disputed. */
export const CORROBORATING_ACCOUNTS = 2;
/** Accounts disputed with none agreeing after which a job's program is taken as not reproducible. */
export const IRREPRODUCIBLE_AFTER = 2;
/** A job's evidence is forgotten after this long without an audit (the job ended or stalled). */
const FORGET_MS = 30 * 60_000;

export type AuditDecision =
  | { kind: "wait" }
  | { kind: "ban"; disputes: Array<{ ref: ResultRef; reason: string }> }
  | { kind: "irreproducible"; reason: string };

interface JobEvidence {
  owner: string;
  agreed: Set<string>;
  disputed: Map<string, Array<{ ref: ResultRef; reason: string }>>;
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

  agreed(jobId: string, owner: string, ref: ResultRef): AuditDecision {
    const e = this.of(jobId, owner);
    if (ref.account !== owner) e.agreed.add(ref.account);
    return this.decide(e);
  }

  disputed(jobId: string, owner: string, ref: ResultRef, reason: string): AuditDecision {
    const e = this.of(jobId, owner);
    const list = e.disputed.get(ref.account) ?? [];
    list.push({ ref, reason });
    e.disputed.set(ref.account, list);
    return this.decide(e);
  }

  private decide(e: JobEvidence): AuditDecision {
    if (e.off) return { kind: "wait" };
    const agreeing = [...e.agreed].filter((a) => !e.disputed.has(a)).length;
    const disputing = e.disputed.size;
    if (disputing === 0) return { kind: "wait" };
    if (agreeing === 0 && disputing >= IRREPRODUCIBLE_AFTER) {
      e.off = `the server's own computation of its program disagreed with the results of ${disputing} accounts' volunteers and agreed with none: the program does not compute the same output everywhere (Math.random, Date, Intl or a check of its environment), so its results cannot be audited`;
      e.disputed.clear();
      return { kind: "irreproducible", reason: e.off };
    }
    if (agreeing >= CORROBORATING_ACCOUNTS && agreeing > disputing) {
      const disputes = [...e.disputed.values()].flat();
      e.disputed.clear();
      return { kind: "ban", disputes };
    }
    return { kind: "wait" };
  }

  private of(jobId: string, owner: string): JobEvidence {
    const now = this.now();
    let e = this.jobs.get(jobId);
    if (!e) {
      for (const [id, old] of this.jobs) if (now - old.touched > FORGET_MS) this.jobs.delete(id);
      e = { owner, agreed: new Set(), disputed: new Map(), touched: now };
      this.jobs.set(jobId, e);
    }
    e.touched = now;
    return e;
  }
}
