import type { ExpiredLease, SweepReport, TaskAssignment } from "../scheduler/types";
import type { WireTask } from "../../worker/protocol/messages";
import { MAX_CHECK_WORK_MS, Verifier } from "./verifier";
import { insertAtRandom, RINGER_SHARE, ringerInput, type Ringer } from "./ringers";
import { send, windowOf, type VolunteerConn } from "./connection";
import type { Live } from "./live";
import { LRUCache } from "lru-cache";
import { blobsOf } from "./liveBlobs";
import type { BlobTokens } from "./blobTokens";

/**
 * Volunteer ids that let a lease lapse, or left holding tasks they never answered, in the
 * last hour: their next socket starts from LAPSED_WINDOW, not FIRST_WINDOW. A socket's own
 * state was not enough: a stranger reconnecting each id every 58 s (just before its leases
 * lapsed) got a fresh first window each time and held a paying job's copies for minutes.
 */
const LAPSED_IDS = 100_000;
const LAPSED_FOR_MS = 3600_000;

/** How often the scheduler is swept for work that waits on volunteers who are not online. */
const SWEEP_MS = 1000;
const SWEEP_SOON_MS = 50;

/**
 * Backpressure: when this many operations wait for the database, no new task goes out until
 * the backlog is under the low mark. Memory stays bounded when SQLite is the bottleneck, and
 * what volunteers are computing still comes back and is committed.
 */
const COMMIT_BACKLOG_HIGH = 30_000;
const COMMIT_BACKLOG_LOW = 10_000;

export interface DispatchDeps {
  verifier: Verifier;
  /** Operations waiting for the database. */
  backlog(): number;
  /** How long a unit that errored on every volunteer online that may take it waits for another. */
  errorWaitMs: number;
  /** The sweep failed a job (its unit errored on every volunteer that may take it). */
  failJob(jobId: string, reason: string): void;
  /** Cluster mode: tasks left the queue; the slice holder claims more if it runs low. */
  leased?(): void;
  /** Cluster mode: a volunteer's threads changed. */
  capacity?(): void;
  /** Signs the blobs tasks read, so any node serves them (absent: only the jobs' own node does). */
  blobTokens?: BlobTokens;
}

/**
 * Work going out: tasks leased to volunteers (with a ringer now and then), leases taken back
 * when they expire or their unit no longer needs them, dispatch held while the commit backlog
 * is high, and the sweep for work that waits on volunteers who are not online.
 */
/** Passes of dispatchAll over the hungry volunteers while a share per host held one back. */
const MAX_SHARE_PASSES = 3;

export class Dispatcher {
  /** Ringers out, by task id: at most one per socket at a time. */
  private readonly ringers = new Map<string, Ringer>();
  /** See LAPSED_IDS. */
  private readonly lapsedIds = new LRUCache<string, true>({ max: LAPSED_IDS, ttl: LAPSED_FOR_MS });
  private leaseTimer: NodeJS.Timeout | undefined;
  private leaseTimerAt = Infinity;
  private localityTimer: NodeJS.Timeout | undefined;
  private localityTimerAt = Infinity;
  /** Dispatch held back by the commit backlog (see COMMIT_BACKLOG_HIGH). */
  private backlogged = false;
  /** The last sweep: results waiting for a copy no volunteer online may compute, by job and by host. */
  private waits: SweepReport = { waits: new Map(), hostWaits: new Map(), failed: [], copies: 0, quiet: [] };
  private readonly sweepTimer: NodeJS.Timeout;
  private sweepQueued = false;

  constructor(private readonly live: Live, private readonly deps: DispatchDeps) {
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
  }

  dispatch(conn: VolunteerConn) {
    const { scheduler, observer } = this.live;
    if (this.backlogged || this.deps.backlog() > COMMIT_BACKLOG_HIGH) {
      if (!this.backlogged) observer.shed("dispatch-paused");
      this.backlogged = true;
      return;
    }
    // A ringer takes one of the frame's places, so the frame is as long as it would be without.
    const free = scheduler.freeSlots(conn.key);
    const ring = free >= 2 && this.wantsRinger(conn);
    const now = this.live.now();
    let leased = scheduler.leaseTasks(conn.key, now, ring ? free - 1 : undefined);
    this.armLocalityTimer();
    this.sendPrefetches();
    if (!leased.length) return;
    const tasks = leased.map((t) => this.toWire(t));
    if (ring && !this.addRinger(conn, tasks)) {
      // No ringer can be made of these tasks (a program's units are audited instead): the
      // place kept for it goes to a task, or a newcomer would get no prefetch at all.
      const more = scheduler.leaseTasks(conn.key, now, 1);
      leased = leased.concat(more);
      for (const t of more) tasks.push(this.toWire(t));
    }
    this.deps.leased?.();
    observer.dispatched(leased.length);
    send(conn.ws, { type: "tasks", tasks });
    this.armLeaseTimer();
  }

  dispatchAll() {
    const { scheduler } = this.live;
    // Under a robust merge's share per host, a volunteer visited before the others had their
    // first units is refused its second; once they have them, another pass fills its window
    // (a new round would otherwise start with one unit per volunteer and no prefetch).
    for (let pass = 0; pass < MAX_SHARE_PASSES; pass++) {
      scheduler.shareDeferred = false;
      for (const key of scheduler.hungryVolunteers()) {
        if (scheduler.stats().queued === 0) return;
        const conn = this.live.conns.get(key);
        if (conn) this.dispatch(conn);
      }
      if (!scheduler.shareDeferred) return;
    }
  }

  /** A volunteer offers more or fewer threads: in a cluster, the node may want more work. */
  capacityChanged() {
    this.deps.capacity?.();
  }

  /** A batch was committed: dispatch held back by the backlog resumes once it is low again. */
  committed() {
    if (this.backlogged && this.deps.backlog() < COMMIT_BACKLOG_LOW) {
      this.backlogged = false;
      setImmediate(() => this.dispatchAll());
    }
  }

  revoke(freed: ExpiredLease[], reason: string) {
    const byVolunteer = new Map<string, string[]>();
    for (const f of freed) {
      const list = byVolunteer.get(f.volunteerId) ?? [];
      list.push(f.taskId);
      byVolunteer.set(f.volunteerId, list);
    }
    for (const [key, taskIds] of byVolunteer) {
      const conn = this.live.conns.get(key);
      if (conn) send(conn.ws, { type: "revoke", taskIds, reason });
    }
  }

  /** Data the scheduler handed over to volunteers (Scheduler.takePrefetches): they fetch it now. */
  private sendPrefetches() {
    for (const [key, blobs] of this.live.scheduler.takePrefetches()) {
      const conn = this.live.conns.get(key);
      if (conn) send(conn.ws, { type: "prefetch", blobs, ...(this.deps.blobTokens ? { tokens: blobs.map((h) => this.deps.blobTokens!.tokenFor(h)) } : {}) });
    }
  }

  /**
   * Units were left for the volunteers that hold their data (Scheduler.localityDeadline): if
   * those have not taken them by then, dispatch comes back and anyone may.
   */
  private armLocalityTimer() {
    const at = this.live.scheduler.localityDeadline();
    if (at === undefined || at >= this.localityTimerAt || this.live.closed) return;
    clearTimeout(this.localityTimer);
    this.localityTimerAt = at;
    this.localityTimer = setTimeout(() => {
      this.localityTimerAt = Infinity;
      this.dispatchAll();
    }, Math.max(0, at - this.live.now()) + 1);
    this.localityTimer.unref();
  }

  private armLeaseTimer() {
    const { scheduler } = this.live;
    const next = scheduler.nextDeadline();
    if (next === undefined || next >= this.leaseTimerAt || this.live.closed) return;
    clearTimeout(this.leaseTimer);
    this.leaseTimerAt = next;
    this.leaseTimer = setTimeout(() => {
      this.leaseTimerAt = Infinity;
      const expired = scheduler.expireLeases(this.live.now());
      if (expired.length) {
        this.live.log(`${expired.length} lease(s) expired`);
        for (const key of new Set(expired.map((e) => e.volunteerId))) this.lapse(key);
        this.revoke(expired, "lease deadline passed");
        this.dispatchAll();
      }
      this.armLeaseTimer();
    }, Math.max(0, next - this.live.now()) + 5);
    this.leaseTimer.unref();
  }

  /** A lease as it goes out; a task that reads blobs carries a token for each (blobTokens.ts). */
  private toWire(t: TaskAssignment): WireTask {
    const wire: WireTask = { taskId: t.taskId, jobId: t.jobId, kernel: t.kernel, params: t.params, input: t.input, deadline: t.deadline };
    const tokens = this.deps.blobTokens;
    // Only programs' tasks read blobs: the built-in kernels' (the hot path) go out as they are.
    if (tokens && t.kernel === "program") {
      const hashes = blobsOf(t.params, [t]);
      if (hashes.length) wire.blobs = Object.fromEntries(hashes.map((h) => [h, tokens.tokenFor(h)]));
    }
    return wire;
  }

  // ---- ringers ------------------------------------------------------------------------

  /**
   * Now and then, a host not trusted yet gets a ringer among its tasks: a unit of one of the
   * jobs in the frame with an input the server computes itself meanwhile.
   */
  private wantsRinger(conn: VolunteerConn): boolean {
    if (conn.ringer !== undefined || this.live.closed) return false;
    // Every frame while a host has passed no check yet (one ringer out at a time), then a share.
    const spot = this.live.scheduler.spotRateOf(conn.key);
    const rate = spot >= 1 ? 1 : spot * RINGER_SHARE;
    return rate > 0 && Math.random() < rate;
  }

  /** Adds a ringer modelled on one of the tasks; false when none can be made of it. */
  private addRinger(conn: VolunteerConn, tasks: WireTask[]): boolean {
    const { scheduler } = this.live;
    const model = tasks[Math.floor(Math.random() * tasks.length)]!;
    if (!Verifier.canCheck(model.kernel)) return false;
    const sample = scheduler.sampleUnit(model.jobId);
    // A ringer's answer is recomputed here: not for units longer than the server recomputes.
    if (sample?.work !== undefined && sample.work > MAX_CHECK_WORK_MS) return false;
    const input = ringerInput(model.kernel, sample?.input, Math.random);
    if (input === undefined) return false;
    const taskId = scheduler.mintTaskId();
    // A ringer is its model's kind of unit, with another seed: the same work.
    const expected = this.deps.verifier
      .recompute(model.kernel, model.params, input, {
        work: sample?.work, stale: () => scheduler.jobState(model.jobId) !== "running", owner: this.live.jobs.get(model.jobId)?.ownerId,
      })
      .then((c) => c.digest, () => undefined);
    this.ringers.set(taskId, { conn: conn.key, jobId: model.jobId, kernel: model.kernel, expected });
    conn.ringer = taskId;
    // It holds a place of the volunteer's window until it comes back.
    scheduler.setWindow(conn.key, windowOf(conn));
    insertAtRandom(tasks, { ...model, taskId, input }, Math.random);
    return true;
  }

  /** The ringer `taskId` if this socket holds it, taken back (it came back as a result). */
  returnedRinger(conn: VolunteerConn, taskId: string): Ringer | undefined {
    const ringer = this.ringers.get(taskId);
    if (!ringer || ringer.conn !== conn.key) return undefined;
    this.ringers.delete(taskId);
    return ringer;
  }

  /** A socket that let a lease lapse, or sat quiet on its units (quiet.ts), starts again from a window of two (connection.ts). */
  private lapse(key: string) {
    const conn = this.live.conns.get(key);
    if (!conn) return;
    conn.proven = 0;
    conn.lapsed = true;
    this.markLapsed(conn.volunteerId);
    this.live.scheduler.setWindow(key, windowOf(conn));
  }

  /** This id let leases lapse, or left holding tasks it never answered (see LAPSED_IDS). */
  markLapsed(volunteerId: string) {
    this.lapsedIds.set(volunteerId, true);
  }

  /** Whether a new socket of this id starts from LAPSED_WINDOW. */
  hasLapsed(volunteerId: string): boolean {
    return this.lapsedIds.has(volunteerId);
  }

  /** The id returned results: its next socket starts as anyone's. */
  proven(volunteerId: string) {
    this.lapsedIds.delete(volunteerId);
  }

  /** Whether `taskId` is a ringer out with some socket. */
  holdsRinger(taskId: string): boolean {
    return this.ringers.has(taskId);
  }

  /** The socket is gone, and so is the ringer it held. */
  forgetRinger(conn: VolunteerConn) {
    if (conn.ringer) this.ringers.delete(conn.ringer);
  }

  /** The job of these ringers ended: they are taken back like its other tasks. */
  revokeRingers(jobId: string, reason: string) {
    this.revoke(this.takeRingers(jobId), reason);
  }

  /** Forgets the job's ringers; returns them as leases to revoke. */
  takeRingers(jobId: string): ExpiredLease[] {
    const out: ExpiredLease[] = [];
    for (const [taskId, r] of this.ringers) {
      if (r.jobId !== jobId) continue;
      this.ringers.delete(taskId);
      const conn = this.live.conns.get(r.conn);
      if (!conn) continue;
      conn.ringer = undefined;
      this.live.scheduler.setWindow(conn.key, windowOf(conn));
      out.push({ taskId, volunteerId: conn.key, jobId, unitId: "" });
    }
    return out;
  }

  // ---- the sweep ----------------------------------------------------------------------

  /**
   * Finds work that waits on volunteers who are not online (see Scheduler.sweep): jobs whose
   * wait changed are re-announced, volunteers are told how many of their results wait, and
   * jobs whose unit errored on every volunteer that could take it fail.
   */
  sweep() {
    const live = this.live;
    if (live.closed) return;
    const before = this.waits;
    const now = live.scheduler.sweep(live.now(), this.deps.errorWaitMs);
    this.waits = now;
    for (const f of now.failed) {
      live.log(`job ${f.jobId} failed: ${f.reason}`);
      this.revoke([...f.dropped, ...this.takeRingers(f.jobId)], "job failed");
      this.deps.failJob(f.jobId, f.reason);
    }
    for (const key of now.quiet) this.lapse(key);
    // Copies of units held by quiet sockets go to whoever has room (the scheduler picks who may take one).
    if (now.copies > 0) {
      for (const key of live.scheduler.hungryVolunteers()) {
        const conn = live.conns.get(key);
        if (conn) this.dispatch(conn);
      }
    }
    for (const id of new Set([...before.waits.keys(), ...now.waits.keys()])) {
      const a = before.waits.get(id);
      const b = now.waits.get(id);
      if (a?.results !== b?.results || a?.units !== b?.units) live.emit("job", live.jobs.get(id)?.jobId ?? id);
    }
    for (const c of live.conns.values()) {
      const n = now.hostWaits.get(c.volunteerId) ?? 0;
      if ((c.toldWaiting ?? 0) !== n) {
        c.toldWaiting = n;
        send(c.ws, { type: "waiting", results: n });
      }
    }
  }

  /** A sweep shortly (a burst of joins or departures makes one sweep, not one each). */
  sweepSoon() {
    if (this.sweepQueued) return;
    this.sweepQueued = true;
    setTimeout(() => {
      this.sweepQueued = false;
      this.sweep();
    }, SWEEP_SOON_MS).unref();
  }

  /** What the last sweep found waiting in this scheduler job. */
  waitOf(schedulerJobId: string) {
    return this.waits.waits.get(schedulerJobId);
  }

  stop() {
    clearTimeout(this.leaseTimer);
    clearTimeout(this.localityTimer);
    clearInterval(this.sweepTimer);
  }
}
