import type { JobSpec, RecoveredResult, RecoveryOutcome, ResultOutcome, UnitSpec } from "../scheduler/types";
import type { BlobStore } from "../store/blobs";
import { dbKind, pgPool, type Db } from "../store/prisma";
import { readJobPg, readUnitsPg, type UnitRange } from "../store/postgres/jobRows";
import type { PersistOp, SliceFence } from "../services/jobs/batchSql";
import { mergeJobResult } from "../services/jobs/merge";
import { replicationSpec } from "../services/jobs/submit";
import { completeRound, currentRound, roundJobId, roundQuorum, stepRoundInMemory, type RoundOutcome } from "../services/jobs/rounds";
import { hostKey, loadRecords } from "../services/volunteers/reliability";
import { userAccount } from "../services/credits/accounts";
import { outputLimitOf, outputSchemaFor } from "../services/programs/outputs";
import { Verifier } from "./verifier";
import { volunteerParams } from "./ringers";
import { PROGRAM_KERNEL } from "../../worker/sandbox/abi";
import { Throughput } from "./progress";
import { toRecord, type ReliabilityBook } from "./reliabilityBook";
import type { Commit } from "./commit";
import type { Dispatcher } from "./dispatch";
import { compactPays, payOf, type JobMeta, type Live } from "./live";
import { blobsOf } from "./liveBlobs";

type FinishOp = Extract<PersistOp, { type: "finish" }>;

export interface LifecycleDeps {
  db: Db;
  blobs: BlobStore;
  commit: Commit;
  dispatch: Dispatcher;
  book: ReliabilityBook;
  verifier: Verifier;
  /** Why the next round may not be stored (the disk at its floor: UPLOAD_DISK_FLOOR_BYTES), or null. */
  diskShort?: () => Promise<string | null>;
  /** Room in its owner's output budget for a program job's merged result (outputBudget.ts, reserve). */
  outputRoom?(ownerId: string, jobId: string, bytes: number): Promise<string | undefined>;
  /** Hands what the scheduler made of recovered results, or of an owner's decision, to the result pipeline. */
  outcome(o: ResultOutcome | RecoveryOutcome): void;
  /**
   * Cluster mode: this node dispatches only the slices it holds (sliceHolder.ts). A slice
   * whose units are all decided is given up here; a new round is held by the node that
   * started it.
   */
  slices?: {
    done(slice: SliceFence): Promise<void>;
    roundStarted(jobId: string, round: number, units: number): Promise<SliceFence>;
    /** Units of these jobs were reopened (a backtrack): their slices are claimable again. */
    reopened(jobIds: string[]): Promise<void>;
  };
}

type JobRow = {
  id: string; ownerId: string; kernel: string; params: string; leaseMs: number; replicas: number; quorum: number;
  maxReplicas: number; adaptive: boolean; tolerance: string | null;
};

const jobColumns = {
  id: true, ownerId: true, kernel: true, params: true, leaseMs: true, replicas: true, quorum: true,
  maxReplicas: true, adaptive: true, tolerance: true,
} as const;

/**
 * A job from its start to its end: loaded into the scheduler (new, recovered after a start,
 * or rebuilt after a backtrack), its rounds, what its owner may change while it runs, and its
 * end (merged, then finished through the group commit).
 */
export class JobLifecycle {
  /** Iterative jobs by database id: the scheduler job of their current round. */
  private readonly rounds = new Map<string, { schedulerId: string; ending?: Promise<void>; cancel?: AbortController; stored?: Promise<unknown> }>();
  /** Jobs being rebuilt after a backtrack: a completion racing with it is not written. */
  private readonly reopening = new Set<string>();

  constructor(private readonly live: Live, private readonly deps: LifecycleDeps) {}

  /**
   * Rebuilds the queue from the database after a start: validated units stay done, results
   * that awaited a quorum count again, and everything else (including what was leased) is
   * queued anew.
   */
  async recover(opts: { load?: boolean } = {}): Promise<number> {
    // The writer thread starts now, not on the first result (it takes a few hundred ms); the
    // spot-checker's starts with the first job it may check (addJob).
    await this.deps.commit.ready();
    if (opts.load === false) return 0;
    const jobs = await this.deps.db.job.findMany({ where: { state: "running" }, select: jobColumns, orderBy: { createdAt: "asc" } });
    for (const job of jobs) await this.loadJob(job);
    if (jobs.length) this.live.log(`recovered ${jobs.length} running job(s)`);
    return jobs.length;
  }

  /**
   * Cluster mode: loads a slice this node just claimed, rebuilt from the durable results as
   * recover() rebuilds a job. False if it is stale (a round that has ended) or the job has ended.
   */
  async loadSlice(slice: { id: string; jobId: string; round: number; first: number; last: number }, fence: SliceFence): Promise<boolean> {
    const job = await readJobPg(pgPool(this.deps.db), slice.jobId);
    if (!job || job.state !== "running") return false;
    if (slice.round > 0 && (await currentRound(this.deps.db, job.id)) !== slice.round) return false;
    await this.loadJob(job, { ...slice, fence });
    return true;
  }

  /** Loads a running job from the database into the scheduler (at start, or after a backtrack reopened it). */
  private async loadJob(job: JobRow, slice?: { round: number; first: number; last: number; fence: SliceFence }) {
    const db = this.deps.db;
    // An iterative job resumes its current round (0 for a one-shot job: all its units).
    const round = slice ? slice.round : await currentRound(db, job.id);
    // A slice of a one-shot job: its units only.
    const { units, pending } = await this.readUnits(job.id, round, slice && !slice.round ? slice : undefined);
    const records = await loadRecords(db, [...new Set(pending.flatMap((p) => [hostKey(p.volunteerId), p.accountId]))]);
    for (const row of records.values()) this.deps.book.seed(row);
    const recovered: RecoveredResult[] = pending.map((p) => ({
      unitId: p.unitId, taskId: p.id, host: p.volunteerId, account: p.accountId, output: JSON.parse(p.output ?? "null"),
      digest: p.digest ?? "", hostRecord: toRecord(records.get(hostKey(p.volunteerId))!), accountRecord: toRecord(records.get(p.accountId)!),
    }));
    this.addJob(
      {
        id: job.id, kernel: job.kernel, params: JSON.parse(job.params), leaseMs: job.leaseMs, maxErrors: 3,
        units: units.map((u) => ({ id: u.id, index: u.idx, input: JSON.parse(u.input), work: u.work })),
        ...replicationSpec({ ...job, tolerance: job.tolerance ? JSON.parse(job.tolerance) : null }),
      },
      job.ownerId,
      new Map(units.map((u) => [u.id, u.pay])),
      { done: units.filter((u) => u.done).map((u) => u.id), pending: recovered },
      round,
      slice && !slice.round ? slice : undefined,
      slice?.fence,
    );
  }

  /** The round's units (of a slice's range) and their results awaiting a quorum; plain SQL on PostgreSQL (jobRows.ts). */
  private async readUnits(jobId: string, round: number, range?: UnitRange) {
    const db = this.deps.db;
    if (dbKind(db) === "postgres") return readUnitsPg(pgPool(db), jobId, round, range);
    const idx = range ? { idx: { gte: range.first, lt: range.last } } : {};
    const [units, pending] = await Promise.all([
      db.workUnit.findMany({
        where: { jobId, round, ...idx },
        select: { id: true, idx: true, input: true, work: true, pay: true, done: true },
        orderBy: { idx: "asc" },
      }),
      db.result.findMany({
        where: { jobId, state: "pending", unit: { round, ...idx } },
        select: { id: true, unitId: true, volunteerId: true, accountId: true, output: true, digest: true },
        orderBy: { receivedAt: "asc" },
      }),
    ]);
    return { units, pending };
  }

  /**
   * Adds a job, or (with `round`) one round of an iterative job, or (with `part`) the slice of
   * a job's units from `part.first`, as a scheduler job of its own.
   */
  addJob(
    spec: JobSpec, ownerId: string, pays: Map<string, number>, recovered?: { done: string[]; pending: RecoveredResult[] }, round = 0,
    part?: { first: number }, slice?: SliceFence,
  ) {
    const { scheduler, jobs } = this.live;
    const jobId = spec.id;
    // Built-in kernels are deterministic and the server runs them too: their units can be spot-checked.
    // An iterative program's units are audited after the fact instead (programAudits.ts): its rounds cannot wait for a check.
    spec = { ...spec, params: volunteerParams(spec.kernel, spec.params), verifiable: Verifier.canCheck(spec.kernel), auditable: round > 0 && spec.kernel === PROGRAM_KERNEL, owner: userAccount(ownerId) };
    if (spec.verifiable) void this.deps.verifier.warmUp();
    // A program whose outputs merge by outvoting outliers: no host gets more units than the merge drops.
    const perHost = (spec.params as { maxUnitsPerHost?: unknown } | null)?.maxUnitsPerHost;
    if (typeof perHost === "number" && perHost >= 1) spec.maxUnitsPerHost = perHost;
    // A round that closes once a share of its units is in (a slow volunteer cannot hold it).
    const share = (spec.params as { roundShare?: unknown } | null)?.roundShare;
    if (round && typeof share === "number" && share > 0 && share < 1) spec.completeAt = roundQuorum(spec.units.length, share);
    // On request, a round's last units get copies on volunteers left idle, so one slow volunteer does not hold it.
    if (round && (spec.params as { speculate?: unknown } | null)?.speculate === true) spec.speculate = true;
    if (round) {
      // Every round reads the same shards: each goes back to the volunteer that has it cached.
      spec = { ...spec, id: roundJobId(jobId, round), units: spec.units.map(withLocality) };
      // The write of the step that started this round may still be on its way (stepRound).
      const stored = this.rounds.get(jobId)?.stored;
      this.rounds.set(jobId, { schedulerId: spec.id, ...(stored ? { stored } : {}) });
    } else if (part) {
      spec = { ...spec, id: `${jobId}@${part.first}` };
    }
    jobs.set(spec.id, {
      // A round's step and audits read its units' inputs; any other job's units live in the
      // scheduler alone, so a done unit's spec leaves memory with its record.
      jobId, round, spec: round ? spec : { ...spec, units: [] }, ownerId, kernel: spec.kernel, output: outputSchemaFor(spec.kernel, spec.params), outputLimit: outputLimitOf(spec.params), pays: compactPays(pays),
      quorum: spec.replication?.quorum ?? 1, leaseMs: spec.leaseMs, throughput: new Throughput(), ...(slice ? { slice } : {}),
      // Every output of a program's round started afresh passes through here: its step can run from memory.
      ...(round && spec.kernel === PROGRAM_KERNEL && !recovered && !this.deps.slices ? { outputs: new Map<number, unknown>() } : {}),
    });
    // Its volunteers fetch these by hash: served to anyone while the job runs here (liveBlobs.ts).
    jobs.blobs.add(spec.id, blobsOf(spec.params, spec.units));
    const { outcomes } = scheduler.addJob(spec, this.live.now(), recovered);
    for (const o of outcomes) this.deps.outcome(o);
    if (scheduler.jobState(spec.id) === "completed" && !outcomes.some((o) => o.kind === "validated" && o.jobDone)) {
      void this.finish(spec.id, "completed");
    }
    this.deps.dispatch.dispatchAll();
    this.live.emit("job", jobId);
  }

  /**
   * Counts and logs a committed end, unless the store found the job already ended: in a
   * cluster, two nodes (or two cancels) may both try to end it, and the job row's lock lets one.
   * Either way the scheduler forgets the job's barred accounts (every ending passes here).
   */
  private counted(end: FinishOp, line: string) {
    this.live.scheduler.jobEnded(end.jobId);
    if (end.ended === false) return;
    this.live.observer.jobFinished(end.state);
    this.live.log(line);
  }

  /**
   * Stops dispatch, takes leases back and refunds the unused escrow once committed. With
   * `failed`, the job ends failed with that error (the server stopped it) instead of cancelled.
   */
  async cancelJob(jobId: string, failed?: string): Promise<boolean> {
    const state = failed === undefined ? "cancelled" as const : "failed" as const;
    // Every unit is done and the results are merging: the merge stops, and the job ends cancelled.
    const merging = this.merging.get(jobId);
    if (merging) {
      merging.stop.abort();
      await merging.ended;
      return true;
    }
    const current = this.rounds.get(jobId);
    if (current?.ending) {
      // Between two rounds: once the step is stored no next round starts (or, if one just
      // did, it is cancelled below).
      (current.cancel ??= new AbortController()).abort();
      await current.ending;
      await this.cancelJob(jobId, failed);
      return true;
    }
    const { scheduler } = this.live;
    const ids = this.schedulerIdsOf(jobId).filter((id) => scheduler.jobState(id) === "running");
    if (this.deps.slices) {
      // Cluster: this node ends the job whether it holds some of it or none; the nodes that hold
      // its slices drop them when they hear of it, or at their next renewal.
      this.dropJob(jobId, `job ${state}`);
      const end: FinishOp = { type: "finish", jobId, state, ...(failed !== undefined ? { error: failed } : {}) };
      await this.deps.commit.queue.enqueue(end);
      this.counted(end, `job ${jobId} ${state}`);
      this.live.emit("job", jobId);
      return true;
    }
    if (!ids.length) return false;
    for (const id of ids) this.deps.dispatch.revoke([...scheduler.cancelJob(id), ...this.deps.dispatch.takeRingers(id)], `job ${state}`);
    await Promise.all(ids.map((id) => this.finish(id, state, failed)));
    return true;
  }

  /**
   * Cluster mode: a slice this node no longer holds (its lease was lost, or the job ended
   * elsewhere) stops here at once; its volunteers' tasks are taken back.
   */
  dropSlice(schedulerId: string, why: string) {
    const { scheduler, jobs } = this.live;
    const meta = jobs.get(schedulerId);
    if (!meta) return;
    if (scheduler.jobState(schedulerId) === "running") this.deps.dispatch.revoke([...scheduler.cancelJob(schedulerId), ...this.deps.dispatch.takeRingers(schedulerId)], why);
    scheduler.removeJob(schedulerId);
    jobs.delete(schedulerId);
    if (meta.round) this.rounds.delete(meta.jobId);
    this.live.emit("job", meta.jobId);
  }

  /** Cluster mode: every slice of the job held here stops (the job ended on another node). */
  dropJob(jobId: string, why: string) {
    for (const id of this.schedulerIdsOf(jobId)) if (this.live.jobs.get(id)?.slice) this.dropSlice(id, why);
  }

  /** The scheduler jobs of a job here: its current round, or its slices (cluster mode), or itself. */
  private schedulerIdsOf(jobId: string): string[] {
    const round = this.rounds.get(jobId);
    if (round) return [round.schedulerId];
    const ids: string[] = [];
    for (const [id, meta] of this.live.jobs) if (meta.jobId === jobId && !meta.round) ids.push(id);
    return ids.length ? ids : [jobId];
  }

  /** A job's progress (an iterative job's: its current round's; in cluster mode, of the slices held here). */
  progress(jobId: string) {
    const ids = this.schedulerIdsOf(jobId);
    return ids.length > 1 ? this.slicesProgress(ids) : this.progressOf(ids[0]);
  }

  private progressOf(jobId: string) {
    const p = this.live.scheduler.progress(jobId);
    const meta = this.live.jobs.get(jobId);
    if (!p || !meta) return undefined;
    const left = p.total - p.done;
    // Nothing computing it: no rate to speak of, and no end in sight until a volunteer comes.
    const rate = p.running > 0 ? meta.throughput.rate(this.live.now()) : null;
    const wait = this.deps.dispatch.waitOf(jobId);
    return {
      ...p, throughput: rate, etaSeconds: left === 0 ? 0 : rate ? left / rate : null,
      /** Results waiting for a copy that no volunteer online may compute (another account's). */
      waiting: wait && wait.results > 0 ? wait : null,
    };
  }

  /** The sum over several slices of one job held here. */
  private slicesProgress(ids: string[]) {
    let sum: NonNullable<ReturnType<JobLifecycle["progressOf"]>> | undefined;
    for (const id of ids) {
      const p = this.progressOf(id);
      if (!p) continue;
      if (!sum) sum = { ...p };
      else {
        sum.total += p.total;
        sum.done += p.done;
        sum.queued += p.queued;
        sum.running += p.running;
        sum.throughput = sum.throughput === null && p.throughput === null ? null : (sum.throughput ?? 0) + (p.throughput ?? 0);
        if (p.waiting) sum.waiting = sum.waiting ? { ...sum.waiting, results: sum.waiting.results + p.waiting.results } : p.waiting;
      }
    }
    if (sum) {
      const left = sum.total - sum.done;
      sum.etaSeconds = left === 0 ? 0 : sum.throughput ? left / sum.throughput : null;
    }
    return sum;
  }

  /** Units waiting and instances running per running job, for the dashboard's queue chart. */
  queues() {
    const out: Array<{ jobId: string; kernel: string; queued: number; running: number; done: number; total: number }> = [];
    for (const [jobId, meta] of this.live.jobs) {
      const p = this.live.scheduler.progress(jobId);
      if (p && p.state === "running") out.push({ jobId: meta.jobId, kernel: meta.kernel, queued: p.queued, running: p.running, done: p.done, total: p.total });
    }
    return out;
  }

  /**
   * The owner accepts the results that wait for a quorum (see Scheduler.acceptPending).
   * Returns how many units that decided.
   */
  acceptUnconfirmed(jobId: string): number {
    const outcomes = this.schedulerIdsOf(jobId).flatMap((id) => this.live.scheduler.acceptPending(id));
    for (const o of outcomes) this.deps.outcome(o);
    if (outcomes.length) this.live.log(`job ${jobId}: the owner accepted ${outcomes.length} unconfirmed unit(s)`);
    this.deps.dispatch.sweep();
    // Hosts on probation whose results these decided may start units again.
    this.deps.dispatch.dispatchAll();
    this.live.emit("job", jobId);
    return outcomes.length;
  }

  /**
   * Changes the replication of a running job (the owner lowers it): `replicas` copies per
   * unit, `quorum` of them agreeing. Stored first, so a restart keeps it; returns the units it decided.
   */
  async setReplication(jobId: string, replicas: number, quorum: number): Promise<number> {
    const { scheduler } = this.live;
    const ids = this.schedulerIdsOf(jobId);
    const meta = this.live.jobs.get(ids[0]);
    const held = !!meta && scheduler.jobState(ids[0]) === "running";
    // In a cluster the job's slices may all be on other nodes: the change is stored here all the same.
    const row = held || !this.deps.slices ? null : await this.deps.db.job.findUnique({ where: { id: jobId }, select: { state: true, maxReplicas: true } });
    if (!held && row?.state !== "running") return 0;
    const maxInstances = Math.max(replicas, meta?.spec.replication?.maxInstances ?? row?.maxReplicas ?? replicas);
    const replication = { target: replicas, quorum, maxInstances };
    await this.deps.db.job.update({ where: { id: jobId }, data: { replicas, quorum, maxReplicas: maxInstances } });
    const outcomes = [];
    for (const id of ids) {
      const m = this.live.jobs.get(id);
      if (!m || scheduler.jobState(id) !== "running") continue;
      m.spec = { ...m.spec, replication };
      m.quorum = quorum;
      outcomes.push(...scheduler.setReplication(id, replication));
    }
    for (const o of outcomes) this.deps.outcome(o);
    this.live.log(`job ${jobId}: replication set to ${replicas} (quorum ${quorum})`);
    this.deps.dispatch.sweep();
    this.deps.dispatch.dispatchAll();
    this.live.emit("job", jobId);
    return outcomes.length;
  }

  /**
   * Rebuilds the running jobs among `jobIds` after `rewrite` changed their results in the
   * database (a backtrack). Their units stop being handed out meanwhile, and a completion
   * racing with it is not written.
   */
  async reopen(jobIds: string[], rewrite: () => Promise<void>, why: string) {
    const { scheduler, jobs } = this.live;
    const { dispatch } = this.deps;
    for (const id of jobIds) this.reopening.add(id);
    if (this.deps.slices) {
      // Cluster: the jobs' slices held here stop; once the results are rewritten, the slices
      // with units to decide again go back to the pool (their holders elsewhere lose them at
      // their next renewal) and are rebuilt by whichever nodes claim them.
      try {
        for (const jobId of jobIds) this.dropJob(jobId, "job is being re-checked");
        await rewrite();
        await this.deps.slices.reopened(jobIds);
        this.live.log(`job(s) ${jobIds.join(", ")} reopened: ${why}`);
      } finally {
        for (const id of jobIds) this.reopening.delete(id);
      }
      for (const id of jobIds) this.live.emit("job", id);
      return;
    }
    try {
      // Units of those jobs that are running here stop being handed out while they are rebuilt.
      for (const jobId of jobIds) {
        if (this.rounds.has(jobId)) continue;
        if (scheduler.jobState(jobId) === "running") dispatch.revoke(scheduler.cancelJob(jobId), "job is being re-checked");
      }
      await rewrite();
      const reopened = await this.deps.db.job.findMany({ where: { id: { in: jobIds }, state: "running" }, select: jobColumns });
      for (const jobId of jobIds) {
        if (this.rounds.has(jobId) || !jobs.has(jobId)) continue;
        // Still running if it was reloaded after the cancel above (by a finishing race).
        if (scheduler.jobState(jobId) === "running") dispatch.revoke(scheduler.cancelJob(jobId), "job is being re-checked");
        scheduler.removeJob(jobId);
        jobs.delete(jobId);
      }
      for (const job of reopened) {
        if (this.rounds.has(job.id) || jobs.has(job.id)) continue;
        await this.loadJob(job);
        this.live.log(`job ${job.id} reopened: ${why}`);
      }
    } finally {
      for (const id of jobIds) this.reopening.delete(id);
    }
    for (const id of jobIds) this.live.emit("job", id);
  }

  /** Job endings under way (a merge can take a while): drain() waits for them. */
  private readonly ending = new Set<Promise<void>>();

  /** Resolves once every job ending started so far is written. */
  async settled() {
    while (this.ending.size) await Promise.allSettled([...this.ending]);
  }

  finish(jobId: string, state: "completed" | "failed" | "cancelled", error?: string): Promise<void> {
    // The job's undecided results no longer hold back their hosts' windows (probation): the
    // other jobs' work goes to them. (A completed job's results were each decided already.)
    if (state !== "completed") this.deps.dispatch.dispatchAll();
    const p = this.end(jobId, state, error);
    this.ending.add(p);
    void p.catch(() => undefined).finally(() => this.ending.delete(p));
    return p;
  }

  private async end(jobId: string, state: "completed" | "failed" | "cancelled", error?: string) {
    const { scheduler, jobs } = this.live;
    this.deps.dispatch.revokeRingers(jobId, state === "completed" ? "unit already validated" : `job ${state}`);
    const meta = jobs.get(jobId);
    if (meta?.round) {
      const current = this.rounds.get(meta.jobId)!;
      return (current.ending ??= this.endRound(jobId, meta, current, state, error));
    }
    if (meta?.slice) return this.endSlice(jobId, meta, state, error);
    const queue = this.deps.commit.queue;
    let end: FinishOp = { type: "finish", jobId, state, error };
    if (state === "completed") {
      // Merge outside the commit queue's transaction (a program's reduce may take seconds),
      // once every validated output of the job is committed.
      await queue.committedSoFar();
      const merged = await this.merge(jobId, meta);
      end = merged === "cancelled" ? { ...end, state: "cancelled" }
        : "error" in merged ? { ...end, state: "failed", error: merged.error } : { ...end, ...merged };
      state = end.state;
      // A cheater was caught meanwhile and the job is being rebuilt (backtrack): not finished after all.
      if (this.reopening.has(jobId) || jobs.get(jobId) !== meta) return this.merged(jobId);
    }
    await queue.enqueue(end).finally(() => this.merged(jobId));
    // Unless a backtrack reopened and reloaded it in the meantime.
    if (jobs.get(jobId) === meta) {
      scheduler.removeJob(jobId);
      jobs.delete(jobId);
    }
    this.counted(end, `job ${jobId} ${state}`);
    this.live.emit("job", jobId);
  }

  /**
   * Cluster mode: a slice held here ended. Completed, it is given up (nobody claims it again)
   * and, if every unit of the job is now done, this node finishes the job: whichever node
   * commits the last units sees the count complete, and the job row's lock makes the end (and
   * the refund of the escrow) happen once however many nodes try. Failed or cancelled, the
   * whole job ends so, and the other nodes drop their slices when they renew.
   */
  private async endSlice(id: string, meta: JobMeta, state: "completed" | "failed" | "cancelled", error?: string) {
    const { scheduler, jobs } = this.live;
    const queue = this.deps.commit.queue;
    let end: FinishOp | undefined;
    if (state === "completed") {
      await queue.committedSoFar();
      await this.deps.slices!.done(meta.slice!);
    } else {
      end = { type: "finish", jobId: meta.jobId, state, error };
      await queue.enqueue(end);
      for (const other of this.schedulerIdsOf(meta.jobId)) if (other !== id) this.dropSlice(other, `job ${state}`);
    }
    if (jobs.get(id) === meta) {
      scheduler.removeJob(id);
      jobs.delete(id);
    }
    if (state === "completed") await this.finishIfAllDone(meta.jobId);
    else if (end) this.counted(end, `job ${meta.jobId} ${state}`);
    this.live.emit("job", meta.jobId);
  }

  /**
   * Jobs whose results are being merged (a program's reduce may take seconds): a cancel stops
   * the merge, and waits for `ended` (the job's end queued for commit).
   */
  private readonly merging = new Map<string, { stop: AbortController; ended: Promise<void>; end(): void }>();

  /** The job's merged result, or "cancelled" if the owner cancelled the job while it merged; call `merged` once its end is queued. */
  private async merge(jobId: string, meta: Pick<JobMeta, "jobId" | "kernel" | "ownerId"> | undefined): Promise<Awaited<ReturnType<typeof mergeJobResult>> | "cancelled"> {
    const stop = new AbortController();
    let end = () => {};
    const ended = new Promise<void>((resolve) => (end = resolve));
    this.merging.set(jobId, { stop, ended, end });
    try {
      const room = meta?.kernel === PROGRAM_KERNEL && this.deps.outputRoom
        ? (bytes: number) => this.deps.outputRoom!(meta.ownerId, meta.jobId, bytes) : undefined;
      const merged = await mergeJobResult(this.deps, jobId, stop.signal, room);
      return stop.signal.aborted ? "cancelled" : merged;
    } catch (e) {
      this.merged(jobId);
      throw e;
    }
  }

  /** The end of a job merged by merge() is queued (or will not be): a cancel waiting for it returns. */
  private merged(jobId: string) {
    const m = this.merging.get(jobId);
    this.merging.delete(jobId);
    m?.end();
  }

  /** Cluster mode: jobs this node is merging and finishing. */
  private readonly finishing = new Map<string, Promise<void>>();

  /** Cluster mode: ends a job whose units are all done (by any node), once. */
  private finishIfAllDone(jobId: string): Promise<void> {
    // Several slices of a job often end in one batch, and each then sees every unit done until
    // the finish commits. The checks of one job run one after another, so each reads the row
    // after the previous one's finish committed: one merge, one count of the ending.
    const previous = this.finishing.get(jobId) ?? Promise.resolve();
    const check = previous.then(async () => {
      const job = await readJobPg(pgPool(this.deps.db), jobId);
      if (!job || job.state !== "running" || job.unitsDone < job.chunks || this.reopening.has(jobId)) return;
      await this.mergeAndFinish(jobId, job);
    });
    const settled = check.catch(() => undefined);
    this.finishing.set(jobId, settled);
    void settled.then(() => {
      if (this.finishing.get(jobId) === settled) this.finishing.delete(jobId);
    });
    return check;
  }

  private async mergeAndFinish(jobId: string, job: { kernel: string; ownerId: string }) {
    const merged = await this.merge(jobId, { jobId, kernel: job.kernel, ownerId: job.ownerId });
    const end: FinishOp = merged === "cancelled" ? { type: "finish", jobId, state: "cancelled" }
      : "error" in merged ? { type: "finish", jobId, state: "failed", error: merged.error }
      : { type: "finish", jobId, state: "completed", ...merged };
    await this.deps.commit.queue.enqueue(end).finally(() => this.merged(jobId));
    this.counted(end, `job ${jobId} ${end.state}`);
  }

  /**
   * The step after a completed round. A program's round that ran here from its start steps
   * from the outputs in memory at once, and its write joins the group commit (ordered before
   * the next round's results); otherwise the round's outputs are committed and read back.
   */
  private async stepRound(meta: JobMeta, signal: AbortSignal): Promise<RoundOutcome> {
    const queue = this.deps.commit.queue;
    // Each round stores its units and results: none is started on a disk at its floor.
    const short = await this.deps.diskShort?.();
    if (short) return { kind: "failed", error: `${short} The job stopped after round ${meta.round}.` };
    const outputs = meta.outputs;
    if (outputs) {
      const units = meta.spec.units.map((u) => ({
        id: u.id, idx: u.index, input: u.input, done: outputs.has(u.index), output: outputs.get(u.index), work: u.work, pay: payOf(meta.pays, u.id),
      })).sort((a, b) => a.idx - b.idx);
      const current = this.rounds.get(meta.jobId);
      // The step reads the round's row, which the previous round's op wrote (committed long ago, unless rounds are very short).
      await current?.stored;
      const { outcome, op } = await stepRoundInMemory(this.deps, meta.jobId, meta.round, units, signal);
      if (op && current) {
        current.stored = queue.enqueue(op).catch((e: Error) => this.live.log(`storing round ${meta.round} of job ${meta.jobId} failed: ${e.message}`));
      }
      return outcome;
    }
    await queue.committedSoFar();
    return completeRound(this.deps, meta.jobId, meta.round, signal);
  }

  /**
   * A round of an iterative job ended. Completed: the step runs (stepRound) and the next
   * round starts, or the job ends with its result.
   * Otherwise (failed, cancelled) the whole job ends so.
   */
  private async endRound(id: string, meta: JobMeta, current: { cancel?: AbortController }, state: "completed" | "failed" | "cancelled", error?: string) {
    const { scheduler, jobs } = this.live;
    const queue = this.deps.commit.queue;
    let end: FinishOp = { type: "finish", jobId: meta.jobId, state, error };
    if (state === "completed") {
      // A cancel while the step runs stops it (current.cancel, aborted by cancelJob).
      const cancel = (current.cancel ??= new AbortController());
      const outcome = await this.stepRound(meta, cancel.signal).catch((e: Error) => {
        // The kernel's step is the server's own code: its failure is logged, not shown as is.
        this.live.log(`round ${meta.round} of job ${meta.jobId} could not be completed: ${e.stack ?? e.message}`);
        return { kind: "failed" as const, error: `round ${meta.round} could not be completed (internal error)` };
      });
      // Shutting down: the next start resumes from what the step stored.
      if (this.live.closed) return;
      if (cancel.signal.aborted) end = { ...end, state: "cancelled" };
      else if (outcome.kind === "next") {
        scheduler.removeJob(id);
        jobs.delete(id);
        const units = outcome.units;
        // Cluster mode: the node that ends a round holds the next one.
        const slice = this.deps.slices && (await this.deps.slices.roundStarted(meta.jobId, outcome.round, units.length));
        if (meta.slice) await this.deps.slices?.done(meta.slice);
        this.addJob({ ...meta.spec, id: meta.jobId, units }, meta.ownerId, new Map(units.map((u) => [u.id, u.pay])), undefined, outcome.round, undefined, slice);
        return;
      } else if (outcome.kind === "done") end = { ...end, result: outcome.result, resultBlob: outcome.resultBlob };
      else end = outcome.kind === "failed" ? { ...end, state: "failed", error: outcome.error } : { ...end, state: "cancelled" };
    }
    await queue.enqueue(end);
    if (meta.slice) await this.deps.slices?.done(meta.slice);
    scheduler.removeJob(id);
    jobs.delete(id);
    this.rounds.delete(meta.jobId);
    this.counted(end, `job ${meta.jobId} ${end.state} in round ${meta.round}`);
    this.live.emit("job", meta.jobId);
  }
}

/** A unit whose input is a stored blob (a shard) names it as the data it reads. */
function withLocality(u: UnitSpec): UnitSpec {
  const blob = (u.input as { blob?: unknown } | null)?.blob;
  return typeof blob === "string" ? { ...u, locality: blob } : u;
}
