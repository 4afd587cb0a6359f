import { EventEmitter } from "node:events";
import type { WebSocket } from "ws";
import { Scheduler } from "../scheduler";
import type { JobSpec, RecoveredResult } from "../scheduler/types";
import { DEFAULT_TRUST, type TrustPolicy } from "../scheduler/credibility";
import type { BlobStore } from "../store/blobs";
import type { Db } from "../store/prisma";
import type { PersistOp } from "../services/jobs/batchSql";
import type { SharedLimiter } from "../cluster/limiter";
import { noObserver, type CoordinatorObserver } from "../monitoring/observer";
import type { InteractiveRouter } from "./interactive";
import { Verifier } from "./verifier";
import { ProgramAudits } from "./programAudits";
import { ReliabilityBook, type BanPolicy } from "./reliabilityBook";
import { hostKey } from "../services/volunteers/reliability";
import { VolunteerEdge, type VolunteerIdentity } from "./edge";
import { OutputDigests } from "./outputDigests";
import { ResultPipeline, type Notices } from "./resultPipeline";
import { CaughtHosts } from "./caughtHosts";
import { JobLifecycle } from "./jobLifecycle";
import { Dispatcher } from "./dispatch";
import { Commit } from "./commit";
import type { Live } from "./live";
import { JobsWithBlobs } from "./liveBlobs";
import { OutputBudget, type OutputBudgetOptions } from "./outputBudget";
import type { BlobTokens } from "./blobTokens";
import { SliceHolder, type SliceHolderOptions } from "./sliceHolder";

export interface CoordinatorOptions {
  db: Db;
  blobs: BlobStore;
  commitIntervalMs: number;
  banPolicy: BanPolicy;
  log?: (msg: string) => void;
  observer?: CoordinatorObserver;
  /** Injected for tests; the core scheduler never reads a clock itself. */
  now?: () => number;
  /** Spot-checks, credibility and placement (see scheduler/credibility.ts); null turns them off. Default DEFAULT_TRUST. */
  trust?: TrustPolicy | null;
  /** The most of a core's time the audits of iterative programs' units may take (0..1]; default 1. */
  auditCpuShare?: number;
  /** Why no further round of an iterative job may be stored now (the disk at its floor), or null. */
  diskShort?: () => Promise<string | null>;
  /** How long a unit that errored on every volunteer online that may take it waits for another before its job fails. Default 15 s. */
  errorWaitMs?: number;
  /** The largest volunteer frame the socket server reads (MAX_WS_MESSAGE_BYTES), told to volunteers in the welcome. */
  maxMessageBytes?: number;
  /** STRAY_RESULTS_PER_SECOND: see VolunteerEdge. */
  strayResultsPerSecond?: number;
  /** Volunteer ids new to the server per network address: see VolunteerEdge. */
  newVolunteers?: SharedLimiter;
  /**
   * Cluster mode (PostgreSQL and Redis, several nodes): this node dispatches only the slices of
   * work it claims (sliceHolder.ts) instead of every running job.
   */
  cluster?: Omit<SliceHolderOptions, "url"> & { url: () => string };
  /** Signs the blobs tasks read (blobTokens.ts); without it, /api/blobs serves anyone only this node's jobs' blobs. */
  blobTokens?: BlobTokens;
  /** Bounds program jobs' outputs (outputBudget.ts); without it they are stored whatever their size. */
  outputs?: Pick<OutputBudgetOptions, "unitBytes" | "quota" | "held">;
}

/**
 * The live side of the server: owns the scheduler, the volunteer sockets and the group
 * commit of results, validations and payouts. Emits "job" (jobId) when a job's progress or
 * state changed, "volunteers" when the set of volunteers changed, and "tick" for either.
 *
 * It only wires its parts together, each of which hands work one way, down this list:
 * edge.ts (the sockets) → resultPipeline.ts (results to verdicts and payouts) → caughtHosts.ts
 * (cheaters and backtracking) → jobLifecycle.ts (jobs, rounds, their end) → dispatch.ts (leases,
 * ringers, the sweep) → commit.ts (the group commit). What goes back up does so through
 * callbacks set here.
 */
export class Coordinator extends EventEmitter {
  readonly scheduler: Scheduler;
  /** Interactive tasks (calc): routed to the least loaded of two random volunteers. */
  readonly interactive: InteractiveRouter;
  private readonly live: Live;
  /** The jobs running here, and the blobs they read (what /api/blobs serves to anyone). */
  private readonly jobs = new JobsWithBlobs();
  /** The server's own recomputation of built-in kernels' units (spot-checks). */
  private readonly verifier = new Verifier();
  /** Large results frames' outputs digested off the loop. */
  private readonly digests = new OutputDigests();
  private readonly commit: Commit;
  private readonly dispatcher: Dispatcher;
  private readonly lifecycle: JobLifecycle;
  private readonly pipeline: ResultPipeline;
  private readonly edge: VolunteerEdge;
  /** Cluster mode only: the slices of work this node holds. */
  private readonly holder: SliceHolder | undefined;

  constructor(private readonly opts: CoordinatorOptions) {
    super();
    this.setMaxListeners(0);
    // A fresh epoch per process keeps task ids from before a restart from matching new ones.
    const trust = opts.trust === undefined ? DEFAULT_TRUST : opts.trust ?? undefined;
    // In a cluster the node's id is in it too, so task ids never collide between nodes.
    const epoch = opts.cluster ? `${opts.cluster.nodeId}.${Date.now().toString(36)}` : Date.now().toString(36);
    this.scheduler = new Scheduler({ epoch, ...(trust ? { trust } : {}) });
    const live: Live = (this.live = {
      scheduler: this.scheduler, jobs: this.jobs, conns: new Map(), observer: opts.observer ?? noObserver, now: opts.now ?? Date.now,
      log: (msg) => this.log(msg), emit: (event: string, ...args: string[]) => this.emit(event, ...args), closed: false,
    });
    const { db, blobs } = opts;
    const verifier = this.verifier;
    const book = new ReliabilityBook(this.scheduler, opts.banPolicy);
    // Built from the bottom up; what goes back up does so through the closures over parts built later.
    const commit = new Commit(db, {
      intervalMs: opts.commitIntervalMs, observer: live.observer, log: live.log, committed: () => dispatch.committed(),
      seal: () => book.pendingOp(),
    });
    const queue = commit.queue;
    const dispatch = new Dispatcher(live, {
      verifier, backlog: () => queue.size, errorWaitMs: opts.errorWaitMs ?? 15_000, ...(opts.blobTokens ? { blobTokens: opts.blobTokens } : {}),
      failJob: (jobId, reason) => void lifecycle.finish(jobId, "failed", reason),
      ...(opts.cluster ? { leased: () => holder!.leased(), capacity: () => holder!.capacityChanged() } : {}),
    });
    const slices = opts.cluster && {
      done: (slice: Parameters<SliceHolder["done"]>[0]): Promise<void> => holder!.done(slice),
      roundStarted: (jobId: string, round: number, units: number): ReturnType<SliceHolder["roundStarted"]> => holder!.roundStarted(jobId, round, units),
      reopened: (jobIds: string[]): Promise<void> => holder!.reopened(jobIds),
    };
    const lifecycle: JobLifecycle = new JobLifecycle(live, { db, blobs, commit, dispatch, book, verifier, outcome: (o) => pipeline.outcome(o), diskShort: opts.diskShort,
      outputRoom: (ownerId, jobId, bytes) => outputs ? outputs.reserve(ownerId, jobId, bytes) : Promise.resolve(undefined), ...(slices ? { slices } : {}) });
    const holder: SliceHolder | undefined = opts.cluster ? new SliceHolder(live, lifecycle, opts.cluster) : undefined;
    const kick = (id: string, until: Date, reason: string) => edge.kick(id, until, reason);
    const caught = new CaughtHosts(live, { db, queue, book, lifecycle, banHours: opts.banPolicy.hours, kick });
    const notices = { credit: (valid, invalid) => edge.credit(valid, invalid), kick } satisfies Notices;
    const outputs = opts.outputs && new OutputBudget({
      ...opts.outputs,
      running: (jobId) => [...live.jobs.values()].some((m) => m.jobId === jobId),
      // Not in the middle of the frame of results that took it over: after it.
      over: (jobId, reason) => setImmediate(() => {
        live.log(`job ${jobId} failed: ${reason}`);
        lifecycle.cancelJob(jobId, reason).catch((e: Error) => live.log(`failing job ${jobId} failed: ${e.message}`));
      }),
    });
    const pipeline = new ResultPipeline(live, { queue, dispatch, lifecycle, caught, book, verifier, audits: new ProgramAudits(blobs, opts.auditCpuShare), notices, ...(outputs ? { outputs } : {}) });
    const edge = new VolunteerEdge(live, { db, queue, dispatch, pipeline, book, maxMessageBytes: opts.maxMessageBytes, strayResultsPerSecond: opts.strayResultsPerSecond, newVolunteers: opts.newVolunteers, digests: this.digests });
    this.commit = commit;
    this.dispatcher = dispatch;
    this.lifecycle = lifecycle;
    this.pipeline = pipeline;
    this.edge = edge;
    this.holder = holder;
    this.interactive = edge.interactive;
  }

  /** Writes `ops` in a transaction of their own, outside the group commit (see Commit.writeAlone). */
  writeAlone(ops: PersistOp[]): Promise<void> {
    return this.commit.writeAlone(ops);
  }

  /** Operations waiting for the database (results, verdicts, payouts…). */
  commitBacklog(): number {
    return this.commit.queue.size;
  }

  /** Units waiting and instances running per running job, for the dashboard's queue chart. */
  queues() {
    return this.lifecycle.queues();
  }

  private log(msg: string) {
    this.opts.log?.(`[coordinator] ${msg}`);
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    // Any change to jobs or volunteers is also a change to the cluster summary.
    if (event !== "tick") super.emit("tick");
    // Volunteers came or went: who may confirm what changed at once, not at the next sweep;
    // in a cluster, a node with more volunteers may take more work.
    if (event === "volunteers") {
      this.dispatcher.sweepSoon();
      this.holder?.wake();
    }
    return super.emit(event, ...args);
  }

  // ---- jobs (jobLifecycle.ts) ---------------------------------------------------------

  /** Rebuilds the queue from the database after a start; returns how many running jobs it loaded. */
  recover(): Promise<number> {
    if (!this.holder) return this.lifecycle.recover();
    // A node of a cluster loads no job of its own accord: it claims slices when its volunteers are hungry.
    return this.lifecycle.recover({ load: false }).then(() => {
      this.holder!.start();
      return 0;
    });
  }

  /**
   * Adds a new job, or (with `round`) one round of an iterative job, as a scheduler job of
   * its own. In a cluster the job is in the database already, cut into slices: this node
   * claims what its volunteers can take, and the other nodes hear of it ("work").
   */
  addJob(spec: JobSpec, ownerId: string, pays: Map<string, number>, recovered?: { done: string[]; pending: RecoveredResult[] }, round = 0) {
    if (this.holder) {
      this.holder.wake();
      this.emit("work", spec.id);
      this.emit("job", spec.id);
      return;
    }
    this.lifecycle.addJob(spec, ownerId, pays, recovered, round);
  }

  /** Cluster mode: new work was submitted on another node; claim some if this node's volunteers are hungry. */
  wakeSlices() {
    this.holder?.wake();
  }

  /** Cluster mode: another node ended this job; its slices here stop. */
  dropJob(jobId: string) {
    this.lifecycle.dropJob(jobId, "job ended on another node");
  }

  /** Cluster mode: the slices this node holds (none otherwise). */
  slices() {
    return this.holder?.slices() ?? [];
  }

  /** Stops dispatch, takes leases back and refunds the unused escrow once committed. */
  cancelJob(jobId: string): Promise<boolean> {
    return this.lifecycle.cancelJob(jobId);
  }

  /** A job's progress (an iterative job's: its current round's). */
  progress(jobId: string) {
    return this.lifecycle.progress(jobId);
  }

  /** The owner accepts the results that wait for a quorum; returns how many units that decided. */
  acceptUnconfirmed(jobId: string): number {
    return this.lifecycle.acceptUnconfirmed(jobId);
  }

  /** The owner changes a running job's replication; returns how many units that decided. */
  setReplication(jobId: string, replicas: number, quorum: number): Promise<number> {
    return this.lifecycle.setReplication(jobId, replicas, quorum);
  }

  // ---- volunteers (edge.ts) -----------------------------------------------------------

  /** The public cluster summary (CLI `status`, volunteer page). */
  status() {
    const s = this.scheduler.stats();
    const ids = new Set<string>();
    let threads = 0;
    for (const c of this.live.conns.values()) {
      ids.add(c.volunteerId);
      threads += c.threads;
    }
    return {
      volunteers: ids.size, connections: this.live.conns.size, threads, tasksQueued: s.queued, tasksRunning: s.leased,
      jobsRunning: s.runningJobs, tasksPerSecond: this.pipeline.throughput.rate(this.live.now()), pendingCommits: this.commit.queue.size,
    };
  }

  volunteers() {
    return this.edge.volunteers();
  }

  /**
   * Whether anyone may fetch this blob: a job running here reads it, or the caller holds a
   * token a task (of any node's) carried for it. Volunteers fetch blobs anonymously.
   */
  readsBlob(hash: string, token?: string | null): boolean {
    return this.jobs.blobs.has(hash) || !!this.opts.blobTokens?.verify(hash, token);
  }

  /**
   * The volunteer on connection `key` answered an interactive task with what the server's own
   * evaluation proves wrong: banned and backtracked like a host that failed a spot-check.
   * False when the connection is gone (its host is then banned alone: the account is unknown).
   */
  caughtInteractive(key: string, volunteerId: string, reason: string): boolean {
    const c = this.live.conns.get(key);
    if (c) this.pipeline.proven(c.volunteerId, c.accountId, reason);
    else {
      const until = new Date(this.live.now() + this.opts.banPolicy.hours * 3600_000);
      this.edge.ban(hostKey(volunteerId), until, reason).catch((e: Error) => this.log(`banning ${volunteerId} failed: ${e.message}`));
    }
    return !!c;
  }

  /** Bans a host ("host:<volunteerId>") or an account until `until`, closing its sockets. */
  ban(id: string, until: Date, reason: string): Promise<void> {
    return this.edge.ban(id, until, reason);
  }

  unban(id: string): Promise<void> {
    return this.edge.unban(id);
  }

  /** Closes the volunteer sockets that signed in with this API key (just revoked). */
  revokeKey(keyId: string) {
    this.edge.revokeKey(keyId);
  }

  /** Takes over a freshly upgraded volunteer socket; `userId` comes from its session or API key. */
  handleConnection(ws: WebSocket, identity: VolunteerIdentity) {
    this.edge.handleConnection(ws, identity);
  }

  /** Commits what is queued and stops; sockets are closed by the HTTP server. */
  async close() {
    this.live.closed = true;
    this.interactive.close();
    this.verifier.close();
    void this.digests.close();
    this.dispatcher.stop();
    await this.commit.close();
    // Once what it computed is committed, its slices go back for the other nodes at once.
    await this.holder?.stop();
  }

  /** For tests: wait until everything decided so far is committed. */
  async drain() {
    await this.pipeline.settled();
    // A job whose last unit was just decided ends after its merge: wait for that too.
    await this.lifecycle.settled();
    return this.commit.queue.drain();
  }
}
