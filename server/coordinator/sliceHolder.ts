import type pg from "pg";
import type { SliceFence } from "../services/jobs/batchSql";
import { claimSlices, heartbeat, releaseSlice, releaseSlices, renewSlices, reopenSlices, sliceDone, startedSlice, SLICE_UNITS, type SliceRow } from "../cluster/slices";
import { windowFor } from "./connection";
import type { JobLifecycle } from "./jobLifecycle";
import type { Live } from "./live";

export interface SliceHolderOptions {
  pool: pg.Pool;
  nodeId: string;
  /** The address other nodes and the admin page know this node by. */
  url: () => string;
  /** How long a claim holds without renewal: a dead node's slices are taken over after this. */
  leaseMs: number;
  /** How often to look for unclaimed work with no news of any (default 1 s). */
  claimEveryMs?: number;
}

/** Claim when fewer tasks than this many windows of this node's volunteers are queued. */
const HUNGER_WINDOWS = 4;
/** Threads offered or withdrawn within this long make one claim: a socket changing them all the time cannot make a query of each. */
const CAPACITY_CLAIM_MS = 50;
/** A node without volunteers this long gives its slices back for others to compute. */
const IDLE_RELEASE_MS = 5000;

/**
 * Cluster mode: the slices of work this node dispatches. It claims slices when its
 * volunteers are hungry (work stealing from the shared pool in PostgreSQL), renews its leases
 * well within their time, drops a slice whose lease it lost (another node holds it now), gives
 * back what it cannot compute, and heartbeats as a Node row.
 */
export class SliceHolder {
  private readonly held = new Map<string, SliceRow>();
  private readonly timers: NodeJS.Timeout[] = [];
  private claiming: Promise<void> | undefined;
  private again = false;
  private idleSince: number | undefined;
  private stopped = false;
  /** Claim again once fewer tasks than this are queued (half of what the last claim aimed for). */
  private lowWater = 0;
  /** The last claim found fewer slices than it asked for: no claim on dispatch until news of work. */
  private dry = false;
  private capacityTimer: NodeJS.Timeout | undefined;

  constructor(private readonly live: Live, private readonly lifecycle: JobLifecycle, private readonly opts: SliceHolderOptions) {}

  start() {
    const every = (ms: number, fn: () => Promise<void>) => {
      const t = setInterval(() => void fn().catch((e: Error) => this.live.log(`[slices] ${e.message}`)), ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.opts.claimEveryMs ?? 1000, () => this.claim());
    every(Math.max(200, Math.floor(this.opts.leaseMs / 3)), () => this.renew());
    every(2000, () => heartbeat(this.opts.pool, this.opts.nodeId, this.opts.url()));
    void heartbeat(this.opts.pool, this.opts.nodeId, this.opts.url()).catch(() => undefined);
    this.wake();
  }

  /** Claims now (new work was submitted, a volunteer came, a slice ended): at most one pass at a time. */
  wake() {
    if (this.claiming) {
      this.again = true;
      return;
    }
    this.claiming = this.claim()
      .catch((e: Error) => this.live.log(`[slices] claiming failed: ${e.message}`))
      .finally(() => {
        this.claiming = undefined;
        if (this.again && !this.stopped) {
          this.again = false;
          this.wake();
        }
      });
  }

  /**
   * Tasks were leased: claim before the queue runs dry rather than when a slice ends or the
   * timer fires, or volunteers sit idle between slices. Cheap when nothing is due: two numbers.
   */
  leased() {
    if (this.dry || this.claiming || this.live.scheduler.stats().queued >= this.lowWater) return;
    this.wake();
  }

  /** A volunteer offers more or fewer threads: claim shortly, once for every change in that time. */
  capacityChanged() {
    this.capacityTimer ??= setTimeout(() => {
      this.capacityTimer = undefined;
      this.wake();
    }, CAPACITY_CLAIM_MS);
  }

  /** Slice ids held now, for the admin page. */
  slices(): SliceRow[] {
    return [...this.held.values()];
  }

  private capacity(): number {
    let c = 0;
    for (const conn of this.live.conns.values()) c += windowFor(conn.threads);
    return c;
  }

  private async claim() {
    if (this.stopped || this.live.closed) return;
    const capacity = this.capacity();
    if (capacity === 0) {
      this.idleSince ??= this.live.now();
      if (this.held.size && this.live.now() - this.idleSince > IDLE_RELEASE_MS) await this.releaseAll("no volunteers here");
      return;
    }
    this.idleSince = undefined;
    const queued = this.live.scheduler.stats().queued;
    this.lowWater = (capacity * HUNGER_WINDOWS) / 2;
    const want = capacity * HUNGER_WINDOWS - queued;
    if (want <= 0) return;
    const asked = Math.min(8, Math.ceil(want / SLICE_UNITS));
    const rows = await claimSlices(this.opts.pool, this.opts.nodeId, asked, this.opts.leaseMs);
    this.dry = rows.length < asked;
    for (const row of rows) {
      // This node's own slice, claimed again: it stalled past the lease, and another node may
      // have held the slice meantime. What it has of it here is stale: rebuilt from the rows.
      this.dropLocal(row.id, "the slice was claimed again after its lease ran out");
      this.held.set(row.id, row);
      const loaded = await this.lifecycle.loadSlice(row, this.fence(row)).catch((e: Error) => {
        this.live.log(`[slices] loading ${row.id} failed: ${e.message}`);
        return "failed" as const;
      });
      // Failed (the database, most likely): given back for a claim to try again; done, it
      // would never be claimed again, and its units would never be decided.
      if (loaded === "failed") await this.giveBack(row.id);
      // Stale (its job or round ended meanwhile): nobody needs it.
      else if (!loaded) await this.done(this.fence(row));
    }
    if (rows.length) this.live.log(`[slices] claimed ${rows.map((r) => r.id).join(", ")}`);
  }

  private async renew() {
    if (this.stopped || !this.held.size) return;
    const kept = await renewSlices(this.opts.pool, this.opts.nodeId, [...this.held.keys()], this.opts.leaseMs);
    for (const id of [...this.held.keys()]) {
      if (kept.has(id)) continue;
      // Lost: the lease ran out (this node stalled) and another node claimed it, or its job ended elsewhere.
      this.held.delete(id);
      this.dropLocal(id, "the slice moved to another node or its job ended");
    }
  }

  private dropLocal(sliceId: string, why: string) {
    for (const [schedulerId, meta] of this.live.jobs) if (meta.slice?.id === sliceId) this.lifecycle.dropSlice(schedulerId, why);
  }

  /** Every unit of the slice is decided (or the slice was stale): given up for good. */
  async done(slice: Pick<SliceFence, "id" | "epoch">) {
    // Only at the epoch it was decided in: a slice claimed again since (this node stalled) is
    // being rebuilt from the rows, and what was decided under the old epoch may have been fenced out.
    if (this.held.get(slice.id)?.epoch === slice.epoch) this.held.delete(slice.id);
    await sliceDone(this.opts.pool, this.opts.nodeId, slice.id, slice.epoch);
    this.wake();
  }

  /** A slice this node could not load: nobody holds it, so any node may claim it now. */
  private async giveBack(sliceId: string) {
    this.held.delete(sliceId);
    this.dropLocal(sliceId, "the slice could not be loaded");
    await releaseSlice(this.opts.pool, this.opts.nodeId, sliceId);
  }

  /** The next round of an iterative job, held by this node (the one that ended the last round). */
  async roundStarted(jobId: string, round: number, units: number): Promise<SliceFence> {
    const row = await startedSlice(this.opts.pool, this.opts.nodeId, { id: `${jobId}:${round}:0`, jobId, round, first: 0, last: units }, this.opts.leaseMs);
    this.held.set(row.id, row);
    return this.fence(row);
  }

  private fence(row: SliceRow): SliceFence {
    return { id: row.id, epoch: row.epoch, node: this.opts.nodeId };
  }

  /** A backtrack reopened units of these jobs: their slices go back to the pool, to be rebuilt. */
  async reopened(jobIds: string[]) {
    for (const [id, row] of [...this.held]) if (jobIds.includes(row.jobId)) this.held.delete(id);
    await reopenSlices(this.opts.pool, jobIds);
    this.wake();
  }

  private async releaseAll(why: string) {
    for (const id of [...this.held.keys()]) this.dropLocal(id, why);
    this.held.clear();
    await releaseSlices(this.opts.pool, this.opts.nodeId);
    this.live.log(`[slices] gave back every slice: ${why}`);
  }

  /** Stops claiming and gives the slices back at once, so others need not wait for the leases. */
  async stop() {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.capacityTimer);
    await this.claiming;
    this.held.clear();
    await releaseSlices(this.opts.pool, this.opts.nodeId).catch(() => undefined);
  }
}
