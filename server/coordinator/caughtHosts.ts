import type { ResultRef } from "../scheduler/types";
import type { GroupCommitter } from "../store/groupCommit";
import type { Db } from "../store/prisma";
import type { PersistOp } from "../services/jobs/batchSql";
import { hostKey } from "../services/volunteers/reliability";
import type { ReliabilityBook } from "./reliabilityBook";
import type { JobLifecycle } from "./jobLifecycle";
import type { Live } from "./live";

export interface CaughtDeps {
  db: Db;
  queue: GroupCommitter<PersistOp>;
  book: ReliabilityBook;
  lifecycle: JobLifecycle;
  banHours: number;
  /** Closes the sockets of a banned host or account. */
  kick(id: string, until: Date, reason: string): void;
}

/**
 * Hosts proved to cheat by a spot-check or a ringer: banned with their accounts at once,
 * their sockets closed, and everything they returned backtracked.
 */
export class CaughtHosts {
  /** Hosts caught and backtracked by this process, and the backtrack running now (one at a time). */
  private readonly backtracked = new Set<string>();
  private backtracking: Promise<void> = Promise.resolve();

  constructor(private readonly live: Live, private readonly deps: CaughtDeps) {}

  /**
   * Bans the hosts and accounts of results proved wrong in the book at once, before any row of
   * the verdict is persisted (those rows then carry the ban); returns when the bans end.
   * A host caught again (a ringer and a check, or two checks, of its results in flight at
   * once) keeps the ban of its first proof: the one logged and backtracked.
   */
  ban(caught: ResultRef[], reason: string): Date {
    const until = new Date(this.live.now() + this.deps.banHours * 3600_000);
    for (const r of caught) {
      if (this.backtracked.has(r.host)) continue;
      for (const id of [hostKey(r.host), r.account]) this.deps.book.setBan(id, until, reason);
    }
    return until;
  }

  /** A host proved to cheat: its sockets close, and everything it returned is backtracked (the promise returned). */
  caught(r: ResultRef, until: Date, reason: string): Promise<void> | undefined {
    // Caught again on another of its results still in a check: already banned and backtracked.
    if (this.backtracked.has(r.host)) return;
    const ids = [hostKey(r.host), r.account];
    this.live.log(`caught ${ids.join(" and ")}: ${reason}`);
    void this.deps.queue.enqueue({ type: "reliability", rows: this.deps.book.rows(ids) });
    for (const id of ids) this.deps.kick(id, until, reason);
    const failed = (e: Error) => this.live.log(`backtracking ${r.host} failed: ${e.stack ?? e.message}`);
    return this.backtrack(r.host, r.account, reason).catch(failed);
  }

  /**
   * Invalidates every result the host or account returned and reopens what they helped decide
   * (backtrackSql.ts), then rebuilds the affected running jobs from the database. Once per
   * host (it is banned: nothing it sends later counts), one backtrack at a time.
   */
  private backtrack(host: string, account: string, reason: string): Promise<void> {
    if (this.backtracked.has(host)) return Promise.resolve();
    this.backtracked.add(host);
    const run = this.backtracking.then(() => this.backtrackNow(host, account, reason));
    this.backtracking = run.catch(() => undefined);
    return run;
  }

  private async backtrackNow(host: string, account: string, reason: string) {
    const { queue } = this.deps;
    // Its last results, and the verdicts on them, are in the database first.
    await queue.committedSoFar();
    const touched = await this.deps.db.result.findMany({
      where: { OR: [{ volunteerId: host }, { accountId: account }], state: { in: ["valid", "pending"] } },
      select: { jobId: true }, distinct: ["jobId"],
    });
    const rewrite = async () => {
      await queue.enqueue({ type: "backtrack", host, account, reason });
      await queue.committedSoFar();
    };
    await this.deps.lifecycle.reopen(touched.map((t) => t.jobId), rewrite, `results of ${host} backtracked`);
  }
}
