import type { Scheduler } from "../scheduler";
import type { ReliabilityRecord } from "../scheduler/types";
import type { ReliabilityCounters, ReliabilityRow, ReliabilityWrite } from "../services/jobs/batchSql";
import { hostKey } from "../services/volunteers/reliability";

export interface BanPolicy {
  /** Invalid results in a row (no valid one in between) that ban a host or account. */
  afterInvalid: number;
  hours: number;
}

/**
 * What the coordinator adds to the scheduler's reliability records: invalid results in a
 * row and bans. Produces the rows to persist, keyed "host:<id>" or by ledger account.
 */
export class ReliabilityBook {
  private readonly extra = new Map<string, { consecutiveInvalid: number; bannedUntil: Date | null; banReason: string | null }>();
  /**
   * The counters as last written (or as read from the database): rows go out as increments
   * from these, so coordinators that count the same host or account at once never overwrite
   * each other's counts.
   */
  private readonly written = new Map<string, ReliabilityCounters>();
  /**
   * Hosts and accounts whose verdicts are not written yet: their rows go out once per commit
   * batch (pendingOp), not once per validated unit, however many units of theirs it holds.
   */
  private readonly dirty = new Set<string>();

  constructor(private readonly scheduler: Scheduler, private readonly policy: BanPolicy) {}

  /** Seeds what the database knows about a host or account (first sight wins, like the scheduler). */
  seed(row: ReliabilityRow) {
    if (!this.written.has(row.id)) this.written.set(row.id, countersOf(row));
    if (!this.extra.has(row.id)) {
      this.extra.set(row.id, { consecutiveInvalid: row.consecutiveInvalid, bannedUntil: row.bannedUntil, banReason: row.banReason });
    }
  }

  setBan(id: string, until: Date | null, reason: string | null) {
    const e = this.extraOf(id);
    e.bannedUntil = until;
    e.banReason = reason;
    if (!until) e.consecutiveInvalid = 0;
  }

  /**
   * Records a validation's verdicts; returns the ids newly banned by the policy. The rows of
   * every host and account involved join the next commit batch (pendingOp).
   */
  verdicts(valid: Array<{ host: string; account: string }>, invalid: Array<{ host: string; account: string }>, now: Date) {
    for (const r of valid) {
      for (const id of [hostKey(r.host), r.account]) {
        this.extraOf(id).consecutiveInvalid = 0;
        this.dirty.add(id);
      }
    }
    const banned: string[] = [];
    for (const r of invalid) {
      for (const id of [hostKey(r.host), r.account]) {
        const e = this.extraOf(id);
        e.consecutiveInvalid++;
        this.dirty.add(id);
        if (e.consecutiveInvalid >= this.policy.afterInvalid && !(e.bannedUntil && e.bannedUntil > now)) {
          e.bannedUntil = new Date(now.getTime() + this.policy.hours * 3600_000);
          e.banReason = `${e.consecutiveInvalid} invalid results in a row`;
          banned.push(id);
        }
      }
    }
    return { banned };
  }

  /**
   * One reliability op with the rows of every host and account touched by verdicts since the
   * last call, or undefined. Called as a commit batch is sealed, so each row covers every
   * verdict enqueued before it, in the same transaction as those verdicts' payouts.
   */
  pendingOp(): { type: "reliability"; rows: ReliabilityWrite[] } | undefined {
    if (!this.dirty.size) return undefined;
    const rows = this.rows([...this.dirty]);
    this.dirty.clear();
    return { type: "reliability", rows };
  }

  /** A ban in force on any of these ids. */
  activeBan(ids: string[], now: Date) {
    for (const id of ids) {
      const e = this.extra.get(id);
      if (e?.bannedUntil && e.bannedUntil > now) return { id, until: e.bannedUntil, reason: e.banReason ?? "banned" };
    }
    return null;
  }

  rows(ids: string[]): ReliabilityWrite[] {
    return ids.map((id) => this.row(id));
  }

  /** The row to write: streaks and bans as they are now, counters as increments since the last write. */
  private row(id: string): ReliabilityWrite {
    const now = this.current(id);
    const before = this.written.get(id) ?? ZERO;
    const after = countersOf(now);
    this.written.set(id, after);
    const add: ReliabilityCounters = {
      valid: after.valid - before.valid, invalid: after.invalid - before.invalid, errors: after.errors - before.errors,
      turnaroundMsTotal: after.turnaroundMsTotal - before.turnaroundMsTotal, turnaroundCount: after.turnaroundCount - before.turnaroundCount,
      spotChecks: after.spotChecks - before.spotChecks,
    };
    return { id, consecutiveValid: now.consecutiveValid, consecutiveInvalid: now.consecutiveInvalid, bannedUntil: now.bannedUntil, banReason: now.banReason, add };
  }

  private current(id: string): ReliabilityRow {
    const rec: ReliabilityRecord | undefined = id.startsWith("host:")
      ? this.scheduler.hostRecord(id.slice("host:".length))
      : this.scheduler.accountRecord(id);
    const e = this.extraOf(id);
    return {
      id,
      consecutiveValid: rec?.consecutiveValid ?? 0,
      valid: rec?.valid ?? 0,
      invalid: rec?.invalid ?? 0,
      errors: rec?.errors ?? 0,
      turnaroundMsTotal: rec?.turnaroundMsTotal ?? 0,
      turnaroundCount: rec?.turnaroundCount ?? 0,
      spotChecks: rec?.spotChecks ?? 0,
      ...e,
    };
  }

  private extraOf(id: string) {
    let e = this.extra.get(id);
    if (!e) this.extra.set(id, (e = { consecutiveInvalid: 0, bannedUntil: null, banReason: null }));
    return e;
  }
}

const ZERO: ReliabilityCounters = { valid: 0, invalid: 0, errors: 0, turnaroundMsTotal: 0, turnaroundCount: 0, spotChecks: 0 };

function countersOf(r: ReliabilityRow): ReliabilityCounters {
  return { valid: r.valid, invalid: r.invalid, errors: r.errors, turnaroundMsTotal: r.turnaroundMsTotal, turnaroundCount: r.turnaroundCount, spotChecks: r.spotChecks ?? 0 };
}

/** The scheduler's part of a stored row. */
export function toRecord(row: ReliabilityRow): ReliabilityRecord {
  return {
    consecutiveValid: row.consecutiveValid, valid: row.valid, invalid: row.invalid, errors: row.errors,
    turnaroundMsTotal: row.turnaroundMsTotal, turnaroundCount: row.turnaroundCount,
    ...(row.spotChecks ? { spotChecks: row.spotChecks } : {}),
  };
}
