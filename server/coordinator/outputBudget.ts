import { formatBytes } from "../http/body";

export interface OutputBudgetOptions {
  /** Bytes of outputs one unit may store (UNIT_OUTPUT_BYTES). */
  unitBytes: number;
  /** Bytes of outputs an account's jobs may keep (ACCOUNT_STORAGE_BYTES); 0: no bound. */
  quota: number;
  /**
   * Outputs the account's ended jobs keep, as measured (services/programs/outputStorage.ts),
   * and which of `ended` (jobs counted here that no longer run) are measured or gone.
   */
  held(ownerId: string, ended: string[]): Promise<{ bytes: number; settled: string[] }>;
  /** Whether a job still runs on this node (its count is dropped once it does not). */
  running(jobId: string): boolean;
  /** Ends a job whose outputs took its owner past the quota. */
  over(jobId: string, reason: string): void;
  /** How long a fetched `held` is used before it is fetched again. Default 30 s. */
  refreshMs?: number;
  now?: () => number;
}

interface Owner {
  held?: number;
  fetchedAt: number;
  fetching: boolean;
  /** Bytes each of the owner's jobs stored here so far: running ones, and ended ones not measured yet. */
  jobs: Map<string, number>;
}

/**
 * What program jobs' outputs take, counted as their units are decided. Before, outputs were
 * stored whatever their size: a hundred units answering 4 MB each stored 781 MB in 32 s for a
 * tenth of a credit. Now a unit's output is refused over `unitBytes` or its job's own bound,
 * and a job whose outputs take its owner past the quota (with what the owner's ended jobs keep)
 * fails, with every other job of the owner's running here. Results waiting for their quorum are
 * not counted: counted as they came, a stranger's answers of garbage failed a victim's job and
 * filled its account. What they store meanwhile is bounded by the job only (its units, times
 * the instances a unit may get, times its bound), not by the account; those left invalid are
 * emptied once the job has ended (outputStorage.ts). A job that ended stays in the count until
 * it is measured or deleted; its merged result is counted before it is stored (reserve). Per
 * node: in a cluster each node counts the slices it holds. Not counted while a job runs: an
 * iterative job's round states and final result (measured once it has ended).
 */
export class OutputBudget {
  private owners = new Map<string, Owner>();
  private failed = new Set<string>();
  private readonly now: () => number;

  constructor(private readonly opts: OutputBudgetOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Why an output of `bytes` may not be stored for a unit of a job bounding its own at `jobLimit`, if it may not. */
  refuse(bytes: number, jobLimit?: number): string | undefined {
    if (jobLimit !== undefined && jobLimit < this.opts.unitBytes) {
      if (bytes <= jobLimit) return undefined;
      const exact = (n: number) => `${n.toLocaleString("en-US")} bytes`;
      return `output of ${exact(bytes)} is over the job's limit of ${exact(jobLimit)} a unit (outputLimitBytes)`;
    }
    if (bytes <= this.opts.unitBytes) return undefined;
    return `output of ${formatBytes(bytes)} is over the ${formatBytes(this.opts.unitBytes)} a unit may store`;
  }

  /** Counts `bytes` stored for a decided unit of `jobId`; fails the job once its owner is over the quota. */
  add(ownerId: string, jobId: string, bytes: number) {
    if (this.opts.quota === 0) return;
    const owner = this.ownerOf(ownerId);
    owner.jobs.set(jobId, (owner.jobs.get(jobId) ?? 0) + bytes);
    if (owner.fetching || this.failed.has(jobId)) return;
    const stale = this.now() - owner.fetchedAt > (this.opts.refreshMs ?? 30_000);
    // Over by the counts here: decided on a fresh `held`, since jobs may have been deleted or ended.
    if (owner.held === undefined || stale || this.total(owner) > this.opts.quota) this.fetch(ownerId, owner, jobId);
  }

  /**
   * Room for a job's merged result of `bytes`, decided on a fresh read of what the owner's ended
   * jobs keep: counted at once if there is (as its job's, until measured), else why not. Merged
   * results were counted only once their jobs were measured: 20 one-unit jobs whose reduce
   * answered 20 MB each, ending together, stored 7.6 times a 50 MiB budget.
   */
  async reserve(ownerId: string, jobId: string, bytes: number): Promise<string | undefined> {
    if (this.opts.quota === 0) return undefined;
    const owner = this.ownerOf(ownerId);
    await this.refresh(ownerId, owner, jobId);
    const total = this.total(owner) + bytes;
    if (total > this.opts.quota) {
      // The entry stays (fetch drops it once empty): a reserve waiting on it may still count into it.
      return `its merged result of ${formatBytes(bytes)} would take the account's stored outputs to ${formatBytes(total)}, over the ${formatBytes(this.opts.quota)} an account may keep (delete jobs you no longer need)`;
    }
    owner.jobs.set(jobId, (owner.jobs.get(jobId) ?? 0) + bytes);
    return undefined;
  }

  private total(owner: Owner): number {
    let total = owner.held ?? 0;
    for (const b of owner.jobs.values()) total += b;
    return total;
  }

  private ownerOf(ownerId: string): Owner {
    let owner = this.owners.get(ownerId);
    if (!owner) this.owners.set(ownerId, (owner = { fetchedAt: 0, fetching: false, jobs: new Map() }));
    return owner;
  }

  /**
   * Reads what the owner's ended jobs keep. An ended job (but `merging`, whose result is being
   * counted) stays in the count here until it is measured (then in `held`) or deleted.
   */
  private async refresh(ownerId: string, owner: Owner, merging?: string) {
    const ended = [...owner.jobs.keys()].filter((id) => id !== merging && !this.opts.running(id));
    const { bytes, settled } = await this.opts.held(ownerId, ended);
    owner.held = bytes;
    owner.fetchedAt = this.now();
    for (const id of settled) owner.jobs.delete(id);
  }

  /** Reads what the owner's ended jobs keep, then fails its jobs here if the owner is over. */
  private fetch(ownerId: string, owner: Owner, jobId: string) {
    owner.fetching = true;
    this.refresh(ownerId, owner).then(
      () => {
        for (const id of this.failed) if (!this.opts.running(id)) this.failed.delete(id);
        const total = this.total(owner);
        if (total > this.opts.quota && owner.jobs.has(jobId)) {
          // Every job of the owner's running here stores on: all stop, not only the one that crossed.
          const reason = `its outputs took the account's stored outputs to ${formatBytes(total)}, over the ${formatBytes(this.opts.quota)} an account may keep (delete jobs you no longer need)`;
          for (const id of owner.jobs.keys()) {
            if (this.failed.has(id) || !this.opts.running(id)) continue;
            this.failed.add(id);
            this.opts.over(id, reason);
          }
        }
        if (!owner.jobs.size) this.owners.delete(ownerId);
      },
      () => undefined,
    ).finally(() => (owner.fetching = false));
  }
}
