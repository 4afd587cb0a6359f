import { Deque } from "./deque.js";
import { JobRotation } from "./jobRotation.js";
import { LeaseHeap } from "./leaseHeap.js";
import { Locality } from "./locality.js";
import { isQuiet, QUIET_COPIES_MAX, wantsQuietCopy } from "./quiet.js";
import { addAgreement, describeNoQuorum, quorumCentre, resultsAgree } from "./quorum.js";
import { NO_INSTANCES, type JobRecord, type TaskRecord, type UnitRecord, type UnitResult, type VolunteerRecord } from "./records.js";
import { chargeError, chargeInvalid, copyRecord, creditValid, emptyRecord, passSpotCheck } from "./reliability.js";
import { established, groupCredibilities, hostCredibility, spotRate, type TrustPolicy } from "./credibility.js";
import {
  DEFAULT_REPLICATION,
  type AccountId,
  type AddJobResult,
  type Comparator,
  type ExpiredLease,
  type FailOutcome,
  type HostId,
  type JobId,
  type JobProgress,
  type JobSpec,
  type JobState,
  type RecoveredResult,
  type RecoveredState,
  type RecoveryOutcome,
  type ReliabilityRecord,
  type ReplicationSpec,
  type ResultOutcome,
  type SweepReport,
  type ResultRef,
  type SchedulerStats,
  type TaskAssignment,
  type TaskId,
  type TaskInfo,
  type UnitFailedOutcome,
  type UnitId,
  type UnitSpec,
  type ValidatedOutcome,
  type VolunteerId,
  type VerifyOutcome,
  type VolunteerInfo,
} from "./types.js";

export interface SchedulerOptions {
  /**
   * Mixed into every task id. Give each process start a different epoch (e.g. the start
   * time in base 36) so a task id issued after a restart never equals one issued before
   * it, and a result computed for a pre-restart lease can never be taken for a new one.
   */
  epoch?: string;
  /** Uniform in [0, 1). Injected so tests are deterministic. Default Math.random. */
  random?: () => number;
  /** Valid results in a row a host needs before adaptive replication may trust it. Default 10. */
  adaptiveMinValid?: number;
  /** Share of a trusted host's units replicated anyway, to catch a host that turned bad. Default 0.1. */
  spotCheckRate?: number;
  /** Units of one job looked at per lease when the first ones are not eligible for the volunteer. Default 64. */
  scanLimit?: number;
  /**
   * Credibility-based sabotage tolerance (see credibility.ts). Without it, a unit is decided
   * by its quorum alone, as in BOINC. With it: units of verifiable jobs are spot-checked
   * (always while their agreeing group is not credible enough, when their results disagree,
   * and at random at a rate that falls with the hosts' verified record); the replicas of a
   * unit do not all go to hosts without a verified record while a verified host is online;
   * replicas go to different networks while several are online; adaptive replication only
   * trusts hosts credible on their own.
   */
  trust?: TrustPolicy;
  /** How long a unit waits for the volunteer that holds its data (UnitSpec.locality) before anyone may take it. Default 250 ms. */
  localityWaitMs?: number;
}

/** The agreeing results from different hosts a unit wants once its spot-check could not run. */
const UNCHECKED_QUORUM = 2;
/** The quorum an untrusted unit wants under a job quorum of `jobQuorum`. */
const quorumOf = (unit: UnitRecord, jobQuorum: number) => (unit.unchecked ? Math.max(jobQuorum, UNCHECKED_QUORUM) : jobQuorum);
const STALE_UNKNOWN = Object.freeze({ kind: "stale", reason: "unknown-task" } as const);
const STALE_NOT_HOLDER = Object.freeze({ kind: "stale", reason: "not-holder" } as const);
const EXACT: Comparator = Object.freeze({ kind: "exact" });
/** Fewer done units than this stay in their job's array (shedDone): not worth a copy. */
const SHED_MIN = 16;

/**
 * Jobs → work units → task instances leased to volunteers, validated by quorum.
 *
 * Each unit is issued to R distinct hosts and accounts; once Q results agree it is
 * validated, and disagreement issues more instances up to M. Hosts with a long record of
 * valid results may be trusted to compute a unit alone (adaptive replication).
 *
 * Pure and synchronous: no I/O, no clock (every time is passed in as `now`, in ms), and
 * randomness comes from `options.random`. Every operation costs O(1) or O(log n) per task
 * touched, times the replication factor; `stats()` reads counters.
 *
 * Lease expiry only happens in `expireLeases`: until the coordinator calls it, a result for
 * a lease past its deadline is still accepted, because the work would otherwise be wasted.
 */
export class Scheduler {
  private readonly jobs = new Map<JobId, JobRecord>();
  private readonly volunteers = new Map<VolunteerId, VolunteerRecord>();
  private readonly tasks = new Map<TaskId, TaskRecord>();
  private readonly hostRecords = new Map<HostId, ReliabilityRecord>();
  private readonly accountRecords = new Map<AccountId, ReliabilityRecord>();
  /** Accounts kept from a job's units, by the job's own id (barFromJob). */
  private readonly barred = new Map<string, Set<AccountId>>();
  /** Jobs (families) that ended here lately: an audit's verdict arriving after its job ended bars no one. */
  private readonly ended = new Set<string>();
  private readonly rotation = new JobRotation<JobRecord>();
  /** Running jobs with spec.speculate: an idle volunteer may take a copy of their running units. */
  private readonly speculative = new Set<JobRecord>();
  /** Units whose every holder is quiet, found by the last sweep (quiet.ts). */
  private readonly quietCopies: UnitRecord[] = [];
  // An entry is stale once its task is released, or when its deadline was moved.
  private readonly leases = new LeaseHeap<TaskRecord>((t, key) => t.live && t.deadline === key);
  /** Volunteers holding fewer tasks than their window, in the order they became so. */
  private readonly hungry = new Set<VolunteerRecord>();
  /** Scratch list for the units passed over while looking for an eligible one. */
  private readonly skipped: UnitRecord[] = [];
  /**
   * Set when a host was refused a unit for having its share of a job (maxUnitsPerHost) while
   * another host had less: once the others have theirs, it may take more (see Dispatch.dispatchAll).
   */
  shareDeferred = false;
  private readonly taskPrefix: string;
  private readonly random: () => number;
  private readonly adaptiveMinValid: number;
  private readonly spotCheckRate: number;
  private readonly scanLimit: number;
  private readonly locality: Locality;
  private readonly trust: TrustPolicy | undefined;
  /** Connected volunteers whose host has a verified record (placement rule), counted lazily. */
  private establishedOnline: number | undefined = 0;
  /** Connected volunteers per network. */
  private readonly networks = new Map<string, number>();
  private jobSeq = 0;
  private taskSeq = 0;
  private queuedCount = 0;
  private runningJobCount = 0;
  private pendingResultCount = 0;

  constructor(options: SchedulerOptions = {}) {
    this.taskPrefix = options.epoch ? `${options.epoch}.` : "";
    this.random = options.random ?? Math.random;
    this.adaptiveMinValid = options.adaptiveMinValid ?? 10;
    this.spotCheckRate = options.spotCheckRate ?? 0.1;
    this.scanLimit = options.scanLimit ?? 64;
    this.locality = new Locality(options.localityWaitMs ?? 250);
    this.trust = options.trust;
    if (!(this.adaptiveMinValid >= 1)) throw new RangeError("adaptiveMinValid must be >= 1");
    if (!(this.spotCheckRate >= 0 && this.spotCheckRate <= 1)) throw new RangeError("spotCheckRate must be in [0, 1]");
    if (!(Number.isInteger(this.scanLimit) && this.scanLimit >= 1)) throw new RangeError("scanLimit must be an integer >= 1");
  }

  // ---- jobs ------------------------------------------------------------------------------

  /**
   * Registers a job and queues its units in index order.
   *
   * `recovered` rebuilds state from the database after a restart: `done` units are not
   * queued; `pending` results count toward quorum, maxInstances and distinctness, and their
   * units are queued for the instances they still lack. A plain iterable of unit ids is
   * taken as `{ done }`. Units whose recovered results already decide them are decided at
   * once and reported in `outcomes`, to be handled like completeTask's outcomes.
   */
  addJob(spec: JobSpec, now: number, recovered?: RecoveredState | Iterable<UnitId>): AddJobResult {
    if (this.jobs.has(spec.id)) throw new Error(`job ${spec.id} already exists`);
    if (!(Number.isFinite(spec.leaseMs) && spec.leaseMs > 0)) {
      throw new RangeError(`job ${spec.id}: leaseMs must be a positive number`);
    }
    if (!(Number.isInteger(spec.maxErrors) && spec.maxErrors >= 1)) {
      throw new RangeError(`job ${spec.id}: maxErrors must be an integer >= 1`);
    }
    const { target, quorum, maxInstances } = spec.replication ?? DEFAULT_REPLICATION;
    checkReplication(spec.id, { target, quorum, maxInstances });
    const comparator = spec.comparator ?? EXACT;
    checkComparator(spec.id, comparator);

    const specs = [...spec.units].sort((a, b) => a.index - b.index);
    const ids = new Set<UnitId>();
    for (const u of specs) {
      if (ids.has(u.id)) throw new Error(`job ${spec.id}: duplicate unit id ${u.id}`);
      ids.add(u.id);
    }
    const state: RecoveredState =
      recovered === undefined ? {} : Symbol.iterator in recovered ? { done: recovered as Iterable<UnitId> } : (recovered as RecoveredState);
    const doneIds = new Set<UnitId>(state.done ?? []);
    for (const id of doneIds) {
      if (!ids.has(id)) throw new Error(`job ${spec.id}: done unit ${id} is not in the job`);
    }
    const pendingBy = new Map<UnitId, RecoveredResult[]>();
    for (const r of state.pending ?? []) {
      if (!ids.has(r.unitId)) throw new Error(`job ${spec.id}: pending result for unit ${r.unitId}, which is not in the job`);
      // A unit validated just before the restart may still have rows of its results.
      if (doneIds.has(r.unitId)) continue;
      const list = pendingBy.get(r.unitId);
      if (list) list.push(r);
      else pendingBy.set(r.unitId, [r]);
    }

    const job: JobRecord = {
      // The units live in the records below: the spec keeps none, so a done unit's spec can go with its record.
      spec: { ...spec, units: [] },
      seq: this.jobSeq++,
      addedAt: now,
      target,
      quorum,
      maxInstances,
      adaptive: spec.adaptive === true,
      verifiable: spec.verifiable === true,
      auditable: spec.auditable === true,
      comparator,
      barred: this.barred.get(jobFamily(spec.id)),
      state: "running",
      units: [],
      doneHeld: 0,
      total: specs.length,
      queue: new Deque<UnitRecord>(specs.length - doneIds.size),
      queuedUnits: 0,
      queuedStarted: 0,
      live: new Set(),
      held: new Map(),
      started: new Set(),
      ...(spec.maxUnitsPerHost ? { perHost: new Map<string, number>() } : {}),
      done: 0,
      pendingUnits: 0,
      pendingResults: 0,
      returned: 0,
      lastError: undefined,
      inRotation: false,
    };
    const quorate: UnitRecord[] = [];
    /** Units holding recovered results: queued first (see below). */
    const started: UnitRecord[] = [];
    let hopeless: UnitRecord | undefined;
    for (const u of specs) {
      // A unit done before a restart needs no record at all.
      if (doneIds.has(u.id)) {
        job.done++;
        continue;
      }
      const unit: UnitRecord = {
        spec: u,
        job,
        done: false,
        errors: 0,
        erroredBy: undefined,
        instances: NO_INSTANCES,
        results: undefined,
        best: 0,
        wanted: target,
        quorum,
        need: 0,
        queued: false,
        leasedOnce: false,
        trusted: false,
        verifying: false,
      };
      job.units.push(unit);
      const pending = pendingBy.get(u.id);
      if (pending) {
        unit.leasedOnce = true;
        for (const r of pending) this.addResult(unit, this.recoveredResult(r));
        job.returned += pending.length;
        if (unit.best >= quorum) {
          quorate.push(unit);
          continue;
        }
        if (!this.canReachQuorum(unit)) hopeless ??= unit;
        unit.wanted = Math.max(target, pending.length + quorum - unit.best);
      }
      unit.need = this.needOf(unit);
      unit.queued = true;
      if (pending) {
        started.push(unit);
        job.queuedStarted++;
      } else {
        job.queue.pushBack(unit);
      }
      job.queuedUnits++;
    }
    // Results wait on these units' copies (and, on probation, hold back their hosts' windows
    // meanwhile): they go first, as a unit that gets a result goes back to the front.
    for (let i = started.length - 1; i >= 0; i--) job.queue.pushFront(started[i] as UnitRecord);
    this.jobs.set(spec.id, job);

    if (job.done >= (spec.completeAt ?? job.total)) {
      job.state = "completed";
      return { progress: this.snapshot(job), outcomes: [] };
    }
    this.runningJobCount++;
    if (spec.speculate) this.speculative.add(job);
    this.queuedCount += job.queuedUnits;
    if (job.queue.size > 0) this.rotation.add(job);

    const outcomes: RecoveryOutcome[] = [];
    for (const unit of quorate) outcomes.push(this.decide(unit, lastTaskId(unit)));
    if (hopeless) outcomes.push(this.failUnit(hopeless, lastTaskId(hopeless)));
    return { progress: this.snapshot(job), outcomes };
  }

  /**
   * Stops dispatching the job and frees its leases; returns them so their volunteers can
   * be told to drop the work. A job that has already ended is left alone.
   */
  cancelJob(jobId: JobId): ExpiredLease[] {
    const job = this.jobs.get(jobId);
    if (!job) throw new Error(`unknown job ${jobId}`);
    if (job.state !== "running") return [];
    return this.endJob(job, "cancelled");
  }

  /** Forgets an ended job to free its memory. Returns false for an unknown job. */
  removeJob(jobId: JobId): boolean {
    const job = this.jobs.get(jobId);
    if (!job) return false;
    if (job.state === "running") throw new Error(`job ${jobId} is still running; cancel it first`);
    this.jobs.delete(jobId);
    return true;
  }

  progress(jobId: JobId): JobProgress | undefined {
    const job = this.jobs.get(jobId);
    return job && this.snapshot(job);
  }

  jobState(jobId: JobId): JobState | undefined {
    return this.jobs.get(jobId)?.state;
  }

  /** Why the job failed: the last kernel error, or why a unit could not reach its quorum. */
  jobError(jobId: JobId): string | undefined {
    return this.jobs.get(jobId)?.lastError;
  }

  // ---- volunteers ------------------------------------------------------------------------

  /**
   * Connects a volunteer socket. `host` and `account` say whose work it is: a unit is
   * never given twice to one host or one account. Their records are seeded from
   * `hostRecord` / `accountRecord` the first time the host / account is seen.
   */
  addVolunteer(id: VolunteerId, info: VolunteerInfo): void {
    if (this.volunteers.has(id)) throw new Error(`volunteer ${id} already connected`);
    checkWindow(info.window);
    if (!info.host || !info.account) throw new Error(`volunteer ${id}: host and account are required`);
    const v: VolunteerRecord = {
      id,
      host: info.host,
      account: info.account,
      hostRecord: recordIn(this.hostRecords, info.host, info.hostRecord),
      accountRecord: recordIn(this.accountRecords, info.account, info.accountRecord),
      speed: info.speed !== undefined && info.speed > 0 ? info.speed : 1,
      network: info.network,
      voice: info.voice,
      window: info.window,
      held: new Set(),
    };
    this.volunteers.set(id, v);
    this.updateHungry(v);
    this.establishedOnline = undefined;
    if (v.network !== undefined) this.networks.set(v.network, (this.networks.get(v.network) ?? 0) + 1);
  }

  /**
   * Changes how many tasks the volunteer may hold. Lowering it below what the volunteer
   * holds takes nothing away; it just gets no more until it is under the new window.
   */
  setWindow(id: VolunteerId, window: number): void {
    const v = this.volunteers.get(id);
    if (!v) throw new Error(`unknown volunteer ${id}`);
    checkWindow(window);
    if ((v.window > 0) !== (window > 0)) this.establishedOnline = undefined;
    v.window = window;
    this.updateHungry(v);
  }

  /**
   * The volunteer is gone: its leases are released and their units go to the front of
   * their job's queue, so a job is not held back by a closed tab. Returns the task ids.
   */
  removeVolunteer(id: VolunteerId, _now: number): TaskId[] {
    const v = this.volunteers.get(id);
    if (!v) return [];
    const held = [...v.held];
    for (const t of held) this.release(t, true);
    // Re-queue in reverse so the first-leased unit ends up first in line again.
    for (let i = held.length - 1; i >= 0; i--) this.lost((held[i] as TaskRecord).unit);
    this.volunteers.delete(id);
    this.hungry.delete(v);
    this.locality.forget(v);
    this.establishedOnline = undefined;
    if (v.network !== undefined) {
      const n = (this.networks.get(v.network) ?? 1) - 1;
      if (n > 0) this.networks.set(v.network, n);
      else this.networks.delete(v.network);
    }
    return held.map((t) => t.id);
  }

  heldBy(volunteerId: VolunteerId): TaskId[] {
    const v = this.volunteers.get(volunteerId);
    return v ? [...v.held].map((t) => t.id) : [];
  }

  /**
   * How many more tasks the volunteer may be given now, of any unit (0 for an unknown
   * volunteer). A host on probation may get more than that: copies of units that already hold
   * others' results, up to its window (see capacity).
   */
  freeSlots(volunteerId: VolunteerId): number {
    const v = this.volunteers.get(volunteerId);
    return v ? Math.max(0, this.capacity(v)) : 0;
  }

  /**
   * Volunteers with free slots, longest-hungry first: whom to offer work when units get
   * queued (new job, expiry, disconnect). A snapshot, safe to iterate while leasing.
   */
  hungryVolunteers(): VolunteerId[] {
    const out: VolunteerId[] = [];
    for (const v of this.hungry) out.push(v.id);
    return out;
  }

  /**
   * A fresh task id. Ids say nothing of their unit (a volunteer cannot tell two replicas of
   * one unit apart, nor a ringer from a real task), and ringers draw from the same sequence.
   */
  mintTaskId(): TaskId {
    return `${this.taskPrefix}${(++this.taskSeq).toString(36)}`;
  }

  /** The share of its results that would be spot-checked now, for the host behind a socket (0 without a trust policy). */
  spotRateOf(volunteerId: VolunteerId): number {
    const v = this.volunteers.get(volunteerId);
    return v && this.trust ? spotRate(v.hostRecord, this.trust) : 0;
  }

  /** A random unit of a running job (a ringer's model): its input and estimated work. */
  sampleUnit(jobId: JobId): Pick<UnitSpec, "input" | "work"> | undefined {
    const job = this.jobs.get(jobId);
    if (!job || job.state !== "running" || job.units.length === 0) return undefined;
    return (job.units[Math.floor(this.random() * job.units.length)] as UnitRecord).spec;
  }

  /** A ringer (a known-answer task) came back right: it counts as a passed spot-check. */
  passedRinger(volunteerId: VolunteerId): void {
    const v = this.volunteers.get(volunteerId);
    if (!v) return;
    this.passCheck(v.hostRecord, v.accountRecord);
    v.hostRecord.sinceCheck = 0;
    this.updateHungry(v);
  }

  /** A host (and its account) passed a spot-check or a ringer; its first makes it established. */
  private passCheck(host: ReliabilityRecord, account: ReliabilityRecord): void {
    passSpotCheck(host);
    passSpotCheck(account);
    if (host.spotChecks === 1) this.establishedOnline = undefined;
  }

  /** The volunteer's host has passed no spot-check yet, so its undecided results hold back the units it may start. */
  onProbation(volunteerId: VolunteerId): boolean {
    const v = this.volunteers.get(volunteerId);
    return !!v && !!this.trust && !established(v.hostRecord);
  }

  /** A copy of the host's record, as it stands now (undefined if never seen). */
  hostRecord(host: HostId): ReliabilityRecord | undefined {
    const r = this.hostRecords.get(host);
    return r && copyRecord(r);
  }

  /** A copy of the account's record, as it stands now (undefined if never seen). */
  accountRecord(account: AccountId): ReliabilityRecord | undefined {
    const r = this.accountRecords.get(account);
    return r && copyRecord(r);
  }

  // ---- tasks -----------------------------------------------------------------------------

  /**
   * Fills the volunteer's window, at most `max` tasks, taking one instance from each job
   * with queued work in turn (submission order) so a big job cannot starve a later small
   * one. A unit is only given to a volunteer whose host and account hold no instance or
   * result of it yet; ineligible units keep their place in the queue.
   */
  leaseTasks(volunteerId: VolunteerId, now: number, max?: number): TaskAssignment[] {
    const v = this.volunteers.get(volunteerId);
    if (!v) return [];
    let n = this.capacity(v, true);
    if (max !== undefined) n = Math.min(n, Math.floor(max));
    if (!(n > 0)) return [];

    const out: TaskAssignment[] = [];
    // Jobs visited in a row that had nothing for this volunteer; a full round of them ends it.
    let misses = 0;
    while (out.length < n && misses < this.rotation.size) {
      const job = this.rotation.next() as JobRecord;
      const task = this.leaseFrom(job, v, now, this.capacity(v) > 0);
      if (task) {
        out.push(task);
        misses = 0;
      } else if (job.inRotation) {
        misses++;
      }
    }
    if (out.length < n && this.speculative.size > 0 && this.capacity(v) > 0) this.speculate(v, now, n - out.length, out);
    if (out.length < n && this.quietCopies.length > 0 && v.answeredAt !== undefined) this.copyQuiet(v, now, n - out.length, out);
    if (out.length > 0) this.updateHungry(v);
    return out;
  }

  /** Copies of running units of speculative jobs with nothing queued, for a volunteer with room (JobSpec.speculate). */
  private speculate(v: VolunteerRecord, now: number, room: number, out: TaskAssignment[]): void {
    for (const job of this.speculative) {
      // Under a share per host (a robust merge) a copy never takes a host past it: a fast host
      // sending garbage would otherwise win the races for more units than the merge outvotes.
      if (job.queuedUnits > 0 || (job.perHost && (job.perHost.get(v.host) ?? 0) >= job.spec.maxUnitsPerHost!)) continue;
      while (room > 0 && !(job.perHost && (job.perHost.get(v.host) ?? 0) >= job.spec.maxUnitsPerHost!)) {
        let oldest: TaskRecord | undefined;
        for (const t of job.live) {
          const u = t.unit;
          if (u.instances.length !== 1 || u.results !== undefined || u.trusted || u.done || u.verifying || u.quorum !== 1) continue;
          if (oldest && t.leasedAt >= oldest.leasedAt) continue;
          if (eligible(u, v) && this.placeable(u, v)) oldest = t;
        }
        if (!oldest) break;
        out.push(this.lease(job, oldest.unit, v, now));
        room--;
      }
      if (room === 0) return;
    }
  }

  /**
   * Copies of units whose holders are quiet (quiet.ts), found by the last sweep, for a volunteer
   * that has answered on its socket (a hoarder is not handed its peers' units) and has room. As
   * in leaseFrom, a host whose results await verdicts may still take a unit that holds others'
   * results: its copy brings them to a verdict (often its own results wait on these very units).
   */
  private copyQuiet(v: VolunteerRecord, now: number, room: number, out: TaskAssignment[]): void {
    let kept = 0;
    for (let i = 0; i < this.quietCopies.length; i++) {
      const u = this.quietCopies[i] as UnitRecord;
      if (u.job.state !== "running" || !wantsQuietCopy(u, now)) continue;
      if (room > 0 && (u.results !== undefined || this.capacity(v) > 0) && eligible(u, v) && this.placeable(u, v)) {
        out.push(this.lease(u.job, u, v, now));
        room--;
        continue;
      }
      this.quietCopies[kept++] = u;
    }
    this.quietCopies.length = kept;
  }

  /**
   * Records a result. `digest` is a hash of the canonical output (computed by the caller):
   * results with equal digests agree. Returns `validated` exactly once per unit.
   */
  completeTask(volunteerId: VolunteerId, taskId: TaskId, output: unknown, digest: string, now: number): ResultOutcome {
    const task = this.tasks.get(taskId);
    if (!task) return STALE_UNKNOWN;
    const v = task.volunteer;
    if (v.id !== volunteerId) return STALE_NOT_HOLDER;
    this.release(task, true);
    answered(v, now);
    const { job, unit } = task;
    job.returned++;
    const turnaroundMs = now - task.leasedAt;
    if (this.trust) this.judgeTiming(v, unit, turnaroundMs);
    const result: UnitResult = {
      taskId,
      volunteer: v.id,
      host: v.host,
      account: v.account,
      hostRecord: v.hostRecord,
      accountRecord: v.accountRecord,
      output,
      digest,
      turnaroundMs,
      agree: 1,
    };
    this.addResult(unit, result);
    // The owner's own machine: its answer is the unit's, for the owner's own job.
    if (job.spec.owner === v.account) return this.validate(unit, taskId, { by: "owner", truth: result });
    if (unit.best >= unit.quorum) return this.decide(unit, taskId);
    // Results that disagree: the server settles it at once, instead of more replicas.
    if (this.trust && job.verifiable && unit.best < (unit.results as UnitResult[]).length) return this.holdForCheck(unit, taskId);
    if (!this.canReachQuorum(unit)) return this.failUnit(unit, taskId);
    // The largest group still lacks (quorum - best) results: make sure that many are coming.
    const results = unit.results as UnitResult[];
    unit.wanted = Math.max(unit.wanted, results.length + unit.quorum - unit.best);
    this.refresh(unit);
    return { kind: "pending", jobId: job.spec.id, unitId: unit.spec.id, taskId, requeued: unit.queued };
  }

  /**
   * The kernel threw on the volunteer. It counts against the host and account, and toward
   * the unit's maxErrors and maxInstances. The unit gets another instance at the front of
   * the queue, unless it has now failed `maxErrors` times (the input or the kernel is
   * presumably broken, and retrying would only burn volunteers' time) or can no longer
   * reach its quorum within maxInstances: then the whole job fails.
   */
  failTask(volunteerId: VolunteerId, taskId: TaskId, error: string, now: number): FailOutcome {
    const task = this.tasks.get(taskId);
    if (!task) return STALE_UNKNOWN;
    const v = task.volunteer;
    if (v.id !== volunteerId) return STALE_NOT_HOLDER;
    this.release(task, true);
    answered(v, now);
    const { job, unit } = task;
    job.returned++;
    // Free ids from one network that all answer with an error are one voice: three of them
    // failed anyone's program job (a built-in kernel's unit is computed by the server instead).
    const voice = errorVoice(v);
    const erred = (unit.erroredBy ??= []);
    if (!erred.some((e) => e.voice === voice)) unit.errors++;
    erred.push({ host: v.host, account: v.account, voice });
    job.started.add(unit);
    chargeError(v.hostRecord);
    chargeError(v.accountRecord);
    unit.lastError = error;
    job.lastError = describeErrors(unit, error);
    if (unit.trusted) this.distrust(unit);
    const base = {
      kind: "error-recorded",
      jobId: job.spec.id,
      unitId: unit.spec.id,
      taskId,
      host: v.host,
      account: v.account,
    } as const;
    if (unit.errors >= job.spec.maxErrors || !this.canReachQuorum(unit)) {
      // A kernel the server runs is not failed on volunteers' word (ErrorOutcome.verify).
      if (this.trust && job.verifiable && !unit.errorsChecked) {
        unit.errorsChecked = true;
        return { ...base, requeued: false, jobFailed: false, dropped: [], verify: this.holdForCheck(unit, taskId) };
      }
      if (unit.errors < job.spec.maxErrors) job.lastError = `${describeNoQuorum(unit)}; last error: ${error}`;
      const dropped = this.endJob(job, "failed");
      return { ...base, requeued: false, jobFailed: true, dropped };
    }
    this.refresh(unit);
    return { ...base, requeued: unit.queued, jobFailed: false, dropped: [] };
  }

  /**
   * The server's recomputation of a unit held by a "verify" outcome: results that agree with
   * it are valid (and passed a spot-check), the others invalid and `caught`; the server's
   * output is the unit's. Undefined when the unit is no longer waiting (its job ended).
   */
  checked(jobId: JobId, unitId: UnitId, output: unknown, digest: string): ValidatedOutcome | undefined {
    const unit = this.verifyingUnit(jobId, unitId);
    if (!unit) return undefined;
    unit.verifying = false;
    unit.job.held.delete(unitId);
    this.markChecking(unit, -1);
    const truth: UnitResult = {
      taskId: "server", volunteer: undefined, host: "", account: "", hostRecord: emptyRecord(), accountRecord: emptyRecord(),
      output, digest, turnaroundMs: undefined, agree: 1,
    };
    return this.validate(unit, lastTaskId(unit), { by: "server", truth });
  }

  /**
   * The recomputation could not be had (it failed or timed out): the unit is decided as it
   * would be without a check: by its quorum if it has one, else by more replicas.
   */
  uncheckable(jobId: JobId, unitId: UnitId): ResultOutcome | undefined {
    const unit = this.verifyingUnit(jobId, unitId);
    if (!unit) return undefined;
    unit.verifying = false;
    unit.job.held.delete(unitId);
    this.markChecking(unit, -1);
    const results = unit.results ?? [];
    const taskId = lastTaskId(unit);
    // It errored past its limits and the server could not compute it either: the job fails, as it would have.
    if (unit.errorsChecked && results.length === 0) return this.failUnit(unit, taskId, describeErrors(unit, unit.lastError ?? "error"));
    // Unchecked, a unit is not taken on one host's word (a check that timed out accepted a
    // stranger's fakes): a second host must agree with it, whatever the job's quorum.
    if (unit.quorum < UNCHECKED_QUORUM) {
      unit.trusted = false;
      unit.unchecked = true;
      unit.quorum = UNCHECKED_QUORUM;
    }
    if (unit.best >= unit.quorum) return this.validate(unit, taskId);
    if (!this.canReachQuorum(unit)) return this.failUnit(unit, taskId);
    unit.wanted = Math.max(unit.wanted, results.length + unit.quorum - unit.best);
    this.refresh(unit);
    return { kind: "pending", jobId: unit.job.spec.id, unitId: unit.spec.id, taskId, requeued: unit.queued };
  }

  // ---- what the owner may do, and what waits --------------------------------------------

  /**
   * The owner accepts the results that wait for a quorum: each such unit is decided by its
   * largest group of agreeing results, as the owner's own decision (records untouched; see
   * ValidatedOutcome.byOwner). Units held for a server check are left to it.
   */
  acceptPending(jobId: JobId): ValidatedOutcome[] {
    const job = this.jobs.get(jobId);
    if (!job || job.state !== "running") return [];
    const out: ValidatedOutcome[] = [];
    for (const unit of job.units) {
      if (unit.done || unit.verifying || !unit.results) continue;
      out.push(this.validate(unit, lastTaskId(unit), { by: "owner", truth: quorumCentre(unit.results) }));
      if (job.state !== "running") break;
    }
    return out;
  }

  /**
   * Changes the replication of a running job (the owner lowering it, typically): units whose
   * results already reach the new quorum are decided now (as a quorum would decide them, so
   * possibly by a spot-check), the others want only what they now lack.
   */
  setReplication(jobId: JobId, replication: ReplicationSpec): Array<ValidatedOutcome | VerifyOutcome> {
    const job = this.jobs.get(jobId);
    if (!job) throw new Error(`unknown job ${jobId}`);
    checkReplication(jobId, replication);
    const { target, quorum, maxInstances } = replication;
    if (job.state !== "running") return [];
    job.target = target;
    job.quorum = quorum;
    job.maxInstances = maxInstances;
    const out: Array<ValidatedOutcome | VerifyOutcome> = [];
    for (const unit of job.units) {
      if (unit.done || unit.verifying || unit.trusted) continue;
      unit.quorum = quorumOf(unit, quorum);
      const results = unit.results;
      if (results && unit.best >= unit.quorum) {
        out.push(this.decide(unit, lastTaskId(unit)));
        if (job.state !== "running") break;
        continue;
      }
      unit.wanted = results ? Math.max(target, results.length + unit.quorum - unit.best) : target;
      unit.need = this.needOf(unit);
      if (unit.need === 0) this.dequeue(unit);
      else this.refresh(unit);
    }
    return out;
  }

  /**
   * Looks for work that waits on volunteers who are not online: results whose unit needs a
   * copy that no connected volunteer may compute (all of them are of an account that already
   * has one, usually the only one online), and units that errored on every volunteer online
   * that may take them. Such a unit fails its job once it has waited `errorWaitMs`: fewer
   * hosts than maxErrors are enough when no other is there to try. O(undecided units ×
   * volunteers looked at until one may take the unit): called about once a second.
   */
  sweep(now: number, errorWaitMs: number): SweepReport {
    const report: SweepReport = { waits: new Map(), hostWaits: new Map(), failed: [], copies: 0, quiet: [] };
    const online: VolunteerRecord[] = [];
    for (const v of this.volunteers.values()) if (v.window > 0) online.push(v);
    const takers = (u: UnitRecord) => online.some((v) => eligible(u, v) && this.placeable(u, v));
    for (const job of this.jobs.values()) {
      if (job.state !== "running" || job.started.size === 0) continue;
      for (const unit of job.started) {
        if (unit.verifying || unit.need === 0 || unit.instances.length > 0) {
          unit.stalledSince = undefined;
          continue;
        }
        if (takers(unit)) {
          unit.stalledSince = undefined;
          continue;
        }
        if (unit.errors > 0 && online.length > 0) {
          unit.stalledSince ??= now;
          if (now - unit.stalledSince >= errorWaitMs) {
            job.lastError = `${describeErrors(unit, unit.lastError ?? "error")}, and no other volunteer online may take it`;
            report.failed.push({ jobId: job.spec.id, unitId: unit.spec.id, reason: job.lastError, dropped: this.endJob(job, "failed") });
            break;
          }
        }
        if (!unit.results) continue;
        const w = report.waits.get(job.spec.id) ?? { units: 0, results: 0 };
        w.units++;
        w.results += unit.results.length;
        report.waits.set(job.spec.id, w);
        for (const r of unit.results) report.hostWaits.set(r.host, (report.hostWaits.get(r.host) ?? 0) + 1);
      }
    }
    this.findQuiet(now, report);
    return report;
  }

  /**
   * Units of running jobs whose every holder has been quiet long enough (quiet.ts): offered as
   * copies until the next sweep, to volunteers the queues left with room. Not only when the
   * job's queue is empty: newcomers whose results wait for the copies quiet sockets hold may
   * start nothing new, and the queued units would wait with them. O(live instances).
   */
  private findQuiet(now: number, report: SweepReport): void {
    this.quietCopies.length = 0;
    for (const job of this.jobs.values()) {
      // Under a share per host (a robust merge), copies are the speculate option's to make.
      if (job.state !== "running" || job.live.size === 0 || job.perHost) continue;
      for (const t of job.live) {
        const v = t.volunteer;
        if (!isQuiet(t, now)) continue;
        if (!v.quietTold) {
          v.quietTold = true;
          report.quiet.push(v.id);
        }
        // A unit with several quiet instances is met once per instance: offered once.
        if (this.quietCopies.length < QUIET_COPIES_MAX && t.unit.instances[0] === t && wantsQuietCopy(t.unit, now)) this.quietCopies.push(t.unit);
      }
    }
    report.copies = this.quietCopies.length;
  }

  /** Counts the unit's results as under a check (delta 1) or no longer (delta -1) on their hosts. */
  private markChecking(unit: UnitRecord, delta: 1 | -1): void {
    for (const r of unit.results ?? []) r.hostRecord.checking = (r.hostRecord.checking ?? 0) + delta;
  }

  private verifyingUnit(jobId: JobId, unitId: UnitId): UnitRecord | undefined {
    const job = this.jobs.get(jobId);
    if (!job || job.state !== "running") return undefined;
    return job.held.get(unitId);
  }

  /** Releases every lease with deadline <= now, earliest first, re-queueing its unit. */
  expireLeases(now: number): ExpiredLease[] {
    const due = this.leases.popDue(now);
    if (due.length === 0) return [];
    const out: ExpiredLease[] = new Array(due.length);
    for (let i = 0; i < due.length; i++) {
      const t = due[i] as TaskRecord;
      out[i] = leaseOf(t);
      this.release(t, false);
    }
    // Reverse, so the unit that expired first is first in line.
    for (let i = due.length - 1; i >= 0; i--) this.lost((due[i] as TaskRecord).unit);
    return out;
  }

  /** Earliest deadline among live leases: when the coordinator should next expire. */
  nextDeadline(): number | undefined {
    return this.leases.peekKey();
  }

  task(taskId: TaskId): TaskInfo | undefined {
    const t = this.tasks.get(taskId);
    return t && {
      taskId: t.id,
      jobId: t.job.spec.id,
      unitId: t.unit.spec.id,
      index: t.unit.spec.index,
      volunteerId: t.volunteer.id,
      host: t.volunteer.host,
      account: t.volunteer.account,
      deadline: t.deadline,
    };
  }

  jobOf(taskId: TaskId): JobId | undefined {
    return this.tasks.get(taskId)?.job.spec.id;
  }

  stats(): SchedulerStats {
    return {
      volunteers: this.volunteers.size,
      queued: this.queuedCount,
      leased: this.tasks.size,
      runningJobs: this.runningJobCount,
      pendingResults: this.pendingResultCount,
      barredJobs: this.barred.size,
    };
  }

  /**
   * Recounts everything from scratch and throws on the first disagreement with the
   * counters and cross-links. O(everything): for tests and debugging, not the hot path.
   */
  audit(): void {
    const fail = (msg: string): never => {
      throw new Error(`scheduler audit: ${msg}`);
    };
    let queued = 0;
    let running = 0;
    let live = 0;
    let pendingResults = 0;
    for (const [id, job] of this.jobs) {
      if (job.spec.id !== id) fail(`job ${id} filed under the wrong id`);
      const isRunning = job.state === "running";
      if (isRunning) running++;
      if (job.inRotation !== (isRunning && job.queue.size > 0)) fail(`job ${id} rotation membership`);
      if (!isRunning && (job.queue.size > 0 || job.live.size > 0 || job.queuedUnits > 0)) fail(`ended job ${id} holds work`);
      if (!isRunning && (job.pendingUnits > 0 || job.pendingResults > 0)) fail(`ended job ${id} counts pending results`);
      let done = 0;
      let instances = 0;
      let pendingUnits = 0;
      let jobPending = 0;
      for (const u of job.units) {
        if (u.done) done++;
        instances += u.instances.length;
        if (u.instances.length === 0 && u.instances !== NO_INSTANCES) fail(`unit ${u.spec.id} keeps an empty array of instances`);
        if (u.done) {
          if (u.instances.length > 0) fail(`done unit ${u.spec.id} has live instances`);
          if (u.results !== undefined || u.need !== 0) fail(`done unit ${u.spec.id} keeps results or needs`);
          continue;
        }
        if (!isRunning) continue;
        const results = u.results ?? [];
        if (u.results !== undefined && results.length === 0) fail(`unit ${u.spec.id} has an empty result list`);
        if (results.length > 0) pendingUnits++;
        jobPending += results.length;
        if ((results.length > 0 || u.errors > 0) && !job.started.has(u)) fail(`unit ${u.spec.id} holds results or errors but the sweep would not see it`);
        this.auditUnit(u, results, fail);
      }
      for (const u of job.started) {
        if (u.job !== job || u.done || (u.results === undefined && u.errors === 0)) fail(`unit ${u.spec.id} is among its job's started units wrongly`);
      }
      if (!isRunning && job.started.size > 0) fail(`ended job ${id} keeps started units`);
      if (done !== job.doneHeld) fail(`job ${id} holds ${job.doneHeld} done units, recount ${done}`);
      if (job.total - (job.units.length - done) !== job.done) fail(`job ${id} done ${job.done}, recount ${job.total - (job.units.length - done)}`);
      for (let i = 1; i < job.units.length; i++) {
        if ((job.units[i - 1] as UnitRecord).spec.index >= (job.units[i] as UnitRecord).spec.index) fail(`job ${id} units out of order`);
      }
      if (instances !== job.live.size) fail(`job ${id} live ${job.live.size}, recount ${instances}`);
      if (isRunning && pendingUnits !== job.pendingUnits) fail(`job ${id} pending units ${job.pendingUnits}, recount ${pendingUnits}`);
      if (isRunning && jobPending !== job.pendingResults) fail(`job ${id} pending results ${job.pendingResults}, recount ${jobPending}`);
      const seen = new Set<UnitRecord>();
      let inQueue = 0;
      let started = 0;
      for (const u of job.queue) {
        if (u.job !== job) fail(`unit ${u.spec.id} queued under another job`);
        if (u.done) continue; // stale entry of a unit validated while queued
        if (!u.queued || seen.has(u)) fail(`unit ${u.spec.id} queued wrongly`);
        seen.add(u);
        inQueue++;
        if (u.results) started++;
      }
      if (isRunning) {
        if (inQueue !== job.queuedUnits) fail(`job ${id} queued ${job.queuedUnits}, recount ${inQueue}`);
        if (started !== job.queuedStarted) fail(`job ${id} queued with results ${job.queuedStarted}, recount ${started}`);
        for (const u of job.units) if (!u.done && u.queued !== seen.has(u)) fail(`unit ${u.spec.id} queued flag`);
      }
      queued += job.queuedUnits;
      live += job.live.size;
      pendingResults += job.pendingResults;
    }
    if (queued !== this.queuedCount) fail(`queued ${this.queuedCount}, recount ${queued}`);
    if (running !== this.runningJobCount) fail(`running jobs ${this.runningJobCount}, recount ${running}`);
    if (live !== this.tasks.size) fail(`leased ${this.tasks.size}, recount over jobs ${live}`);
    if (pendingResults !== this.pendingResultCount) fail(`pending results ${this.pendingResultCount}, recount ${pendingResults}`);
    const members = this.rotation.members();
    for (let i = 1; i < members.length; i++) {
      if ((members[i - 1] as JobRecord).seq >= (members[i] as JobRecord).seq) fail("rotation out of order");
    }
    let held = 0;
    for (const [id, v] of this.volunteers) {
      held += v.held.size;
      for (const t of v.held) if (t.volunteer !== v || this.tasks.get(t.id) !== t) fail(`volunteer ${id} holds a foreign task`);
      if (this.hungry.has(v) !== v.held.size < v.window) fail(`volunteer ${id} hungry flag`);
      if (this.hostRecords.get(v.host) !== v.hostRecord || this.accountRecords.get(v.account) !== v.accountRecord) {
        fail(`volunteer ${id} records`);
      }
    }
    if (held !== this.tasks.size) fail(`held ${held}, leased ${this.tasks.size}`);
    if (this.hungry.size > this.volunteers.size) fail("hungry set holds departed volunteers");
    for (const t of this.tasks.values()) {
      if (!t.live || !t.job.live.has(t) || !t.unit.instances.includes(t)) fail(`task ${t.id} cross-links`);
      if (this.jobs.get(t.job.spec.id) !== t.job) fail(`task ${t.id} of a forgotten job`);
    }
    if (this.leases.liveSize !== this.tasks.size) {
      fail(`lease heap live ${this.leases.liveSize}, leased ${this.tasks.size}`);
    }
  }

  // ---- internals -------------------------------------------------------------------------

  /** One undecided unit of a running job: its counts, agreement, needs and distinctness. */
  private auditUnit(u: UnitRecord, results: UnitResult[], fail: (msg: string) => never): void {
    const job = u.job;
    const id = u.spec.id;
    let best = 0;
    for (const r of results) {
      let agree = 0;
      for (const o of results) if (resultsAgree(r, o, job.comparator)) agree++;
      if (agree !== r.agree) fail(`unit ${id} result ${r.taskId} agree ${r.agree}, recount ${agree}`);
      best = Math.max(best, agree);
    }
    if (best !== u.best) fail(`unit ${id} best ${u.best}, recount ${best}`);
    if (u.verifying !== (job.held.get(id) === u)) fail(`unit ${id} verifying ${u.verifying}, held ${job.held.has(id)}`);
    if (u.verifying) {
      if (u.need !== 0 || u.queued || u.instances.length > 0 || (results.length === 0 && !u.errorsChecked)) fail(`unit ${id} waits for a check but is not idle`);
      return;
    }
    if (u.best >= u.quorum) fail(`unit ${id} reached its quorum but is not validated`);
    if (!this.canReachQuorum(u)) fail(`unit ${id} cannot reach its quorum but the job runs`);
    if (u.errors >= job.spec.maxErrors) fail(`unit ${id} has ${u.errors} errors but the job runs`);
    if (u.trusted) {
      if (u.quorum !== 1 || u.wanted !== 1) fail(`trusted unit ${id} wants more than one result`);
      if (results.length > 0 || u.errors > 0 || u.instances.length !== 1) fail(`trusted unit ${id} state`);
    } else if (u.quorum !== quorumOf(u, job.quorum) || u.wanted < job.target) {
      fail(`unit ${id} quorum or wanted`);
    }
    if (u.need !== this.needOf(u)) fail(`unit ${id} need ${u.need}, recount ${this.needOf(u)}`);
    if (u.queued !== u.need > 0) fail(`unit ${id} queued ${u.queued} with need ${u.need}`);
    if (u.need === 0 && u.instances.length === 0) fail(`unit ${id} is stuck: nothing queued, nothing running`);
    if (results.length + u.errors + u.instances.length + u.need > job.maxInstances) fail(`unit ${id} exceeds maxInstances`);
    const hosts = new Set<string>();
    const accounts = new Set<string>();
    const owners = [
      ...u.instances.map((t) => [t.volunteer.host, t.volunteer.account] as const),
      ...results.map((r) => [r.host, r.account] as const),
    ];
    for (const [h, a] of owners) {
      if (hosts.has(h) || accounts.has(a)) fail(`unit ${id} given twice to host ${h} or account ${a}`);
      hosts.add(h);
      accounts.add(a);
    }
  }

  /**
   * Leases one instance of the first unit of the job that the volunteer may take, looking
   * at most `scanLimit` units down the queue; without `fresh`, only units that already hold
   * results. Units passed over keep their order, and a unit that still needs instances after
   * this one keeps its place at the head, so the next volunteers take its other replicas.
   */
  private leaseFrom(job: JobRecord, v: VolunteerRecord, now: number, fresh: boolean): TaskAssignment | undefined {
    if (!fresh && job.queuedStarted === 0) return undefined;
    if (job.perHost && this.overShare(job, job.perHost, v)) {
      this.shareDeferred = true;
      return undefined;
    }
    const q = job.queue;
    const skipped = this.skipped;
    let found: UnitRecord | undefined;
    for (let scanned = 0; scanned < this.scanLimit; scanned++) {
      const u = q.popFront();
      if (u === undefined) break;
      if (u.done || !u.queued) continue; // stale entry: validated, or held for a check, while queued
      if ((fresh || u.results !== undefined) && eligible(u, v) && this.placeable(u, v) && !this.heldElsewhere(u, v, now)) {
        found = u;
        break;
      }
      skipped.push(u);
    }
    let task: TaskAssignment | undefined;
    if (found) {
      task = this.lease(job, found, v, now);
      if (found.need > 0) {
        q.pushFront(found);
      } else {
        found.queued = false;
        job.queuedUnits--;
        if (found.results) job.queuedStarted--;
        this.queuedCount--;
        // The round's last unit handed out: who holds its data is settled for the next round.
        if (job.queuedUnits === 0 && found.spec.locality !== undefined) this.locality.spread(job.units.map((u) => u.spec.locality), now);
      }
    }
    for (let i = skipped.length - 1; i >= 0; i--) q.pushFront(skipped[i] as UnitRecord);
    skipped.length = 0;
    if (q.size === 0) this.rotation.remove(job);
    return task;
  }

  /** Another volunteer online holds the unit's data and may take it: `v` leaves it to that one for a while (locality.ts). */
  private heldElsewhere(u: UnitRecord, v: VolunteerRecord, now: number): boolean {
    const key = u.spec.locality;
    if (key === undefined) return false;
    return this.locality.passOver(key, v, u.job.addedAt, now, (holder) => this.volunteers.get(holder.id) === holder && eligible(u, holder) && !this.refusedShare(u.job, holder, v));
  }

  /**
   * Whether `holder` would be refused more of the job for its host's share (overShare) while
   * `v` asks: its host has the share and v's host, another, has less. Without this a newcomer
   * would pass over shards whose holders may not take them until the locality wait ends.
   */
  private refusedShare(job: JobRecord, holder: VolunteerRecord, v: VolunteerRecord): boolean {
    const perHost = job.perHost;
    if (!perHost || holder.host === v.host) return false;
    const cap = job.spec.maxUnitsPerHost!;
    return (perHost.get(holder.host) ?? 0) >= cap && (perHost.get(v.host) ?? 0) < cap;
  }

  /**
   * When units passed over for the volunteers that hold their data may go to anyone: the
   * dispatcher comes back then if nothing else has taken them. Cleared by the call.
   */
  localityDeadline(): number | undefined {
    return this.locality.takeDeadline();
  }

  /**
   * Data handed over to volunteers online since the last call (locality.ts): each should fetch
   * these blobs now, ahead of the units that will read them. Cleared by the call.
   */
  takePrefetches(): Map<VolunteerId, string[]> {
    const out = new Map<VolunteerId, string[]>();
    for (const { to, key } of this.locality.takeHints()) {
      if (this.volunteers.get(to.id) !== to) continue;
      const list = out.get(to.id);
      if (list) list.push(key);
      else out.set(to.id, [key]);
    }
    return out;
  }

  /** The host has its share of the job (maxUnitsPerHost) and another host online has had less. */
  private overShare(job: JobRecord, perHost: Map<string, number>, v: VolunteerRecord): boolean {
    const cap = job.spec.maxUnitsPerHost!;
    if ((perHost.get(v.host) ?? 0) < cap) return false;
    // A host kept from the job (an audit found its result wrong) waits for no share.
    const barred = job.barred;
    for (const other of this.volunteers.values()) {
      if (other.host !== v.host && (perHost.get(other.host) ?? 0) < cap && !(barred !== undefined && barred.has(other.account))) return true;
    }
    return false;
  }

  private lease(job: JobRecord, unit: UnitRecord, v: VolunteerRecord, now: number): TaskAssignment {
    if (job.perHost) job.perHost.set(v.host, (job.perHost.get(v.host) ?? 0) + 1);
    if (unit.spec.locality !== undefined) this.locality.took(unit.spec.locality, v, now);
    if (!unit.leasedOnce) {
      unit.leasedOnce = true;
      // The owner's own host computes the unit alone; so may a host adaptive replication trusts.
      const own = job.spec.owner === v.account;
      if (job.target > 1 && (own || (job.adaptive && this.trusts(v.hostRecord) && this.credibleAlone(v.hostRecord)))) {
        unit.trusted = true;
        unit.quorum = 1;
        unit.wanted = 1;
      }
    }
    const id = this.mintTaskId();
    const deadline = now + job.spec.leaseMs;
    const task: TaskRecord = { id, job, unit, volunteer: v, leasedAt: now, deadline, live: true };
    this.tasks.set(id, task);
    v.held.add(task);
    if (unit.instances === NO_INSTANCES) unit.instances = [task];
    else unit.instances.push(task);
    job.live.add(task);
    this.leases.push(deadline, task);
    unit.need = this.needOf(unit);
    return {
      taskId: id,
      jobId: job.spec.id,
      unitId: unit.spec.id,
      index: unit.spec.index,
      kernel: job.spec.kernel,
      params: job.spec.params,
      input: unit.spec.input,
      deadline,
    };
  }

  /**
   * Adaptive replication (as BOINC): a host with a streak of n >= adaptiveMinValid valid
   * results computes a unit alone with probability 1 - 1/n, except for spot checks.
   */
  private trusts(record: ReliabilityRecord): boolean {
    const n = record.consecutiveValid;
    return n >= this.adaptiveMinValid && this.random() < 1 - 1 / n && this.random() >= this.spotCheckRate;
  }

  /**
   * Tasks the volunteer may take now: of any unit, or (`started`) of units that already hold
   * results. On probation (trust policy, no spot-check passed yet), or while the server checks
   * one of its results, a host's results awaiting a verdict count against its window too: a
   * host that answers instantly with made-up results cannot run ahead of the check that will
   * catch it.
   *
   * On probation that holds back only the units it starts. A copy of a unit that already holds
   * results starts nothing: its result joins those and takes the unit to its verdict (at once
   * with a quorum of two: a check, for a newcomer's). Held back too, such copies deadlock a
   * fleet of newcomers whose windows are full of results waiting for each other's copies (as
   * after a reload, when the leases of those copies are gone). While one of its results is
   * being checked, a host waits for that verdict (it comes, and the coordinator offers the
   * host work again then). A verified host may start new units with up to
   * `trust.maxUnverified` results awaiting a verdict, so that no record, however long, lets
   * a host run unboundedly ahead of the replicas that would catch its fakes.
   */
  private capacity(v: VolunteerRecord, started = false): number {
    const n = v.window - v.held.size;
    const trust = this.trust;
    if (!trust) return n;
    const r = v.hostRecord;
    const awaiting = r.awaiting ?? 0;
    if ((r.checking ?? 0) > 0) return n - awaiting;
    if (started) return n;
    return established(r) ? n - Math.max(0, awaiting - trust.maxUnverified) : n - awaiting;
  }

  /** With a trust policy, adaptive replication only trusts a host credible enough on its own. */
  private credibleAlone(r: ReliabilityRecord): boolean {
    return !this.trust || hostCredibility(r, this.trust) >= this.trust.threshold;
  }

  /**
   * Placement rules of the trust policy, on top of distinct hosts and accounts: the copy that
   * would complete a quorum of hosts without a verified record waits for a verified host while
   * one is online, and a unit avoids a network it already has a copy on while others are online.
   */
  private placeable(u: UnitRecord, v: VolunteerRecord): boolean {
    if (!this.trust) return true;
    const copies = u.instances.length + (u.results?.length ?? 0);
    if (copies === 0) return true;
    if (v.network !== undefined && this.networks.size > 1) {
      for (const t of u.instances) if (t.volunteer.network === v.network) return false;
    }
    if (copies + 1 < u.quorum || established(v.hostRecord)) return true;
    for (const t of u.instances) if (established(t.volunteer.hostRecord)) return true;
    for (const r of u.results ?? []) if (established(r.hostRecord)) return true;
    return this.establishedCount() === 0;
  }

  private establishedCount(): number {
    if (this.establishedOnline === undefined) {
      let n = 0;
      for (const v of this.volunteers.values()) if (v.window > 0 && established(v.hostRecord)) n++;
      this.establishedOnline = n;
    }
    return this.establishedOnline;
  }

  /** A result back faster than the host's benchmark allows for the unit's work: check the host. */
  private judgeTiming(v: VolunteerRecord, unit: UnitRecord, turnaroundMs: number): void {
    const trust = this.trust as TrustPolicy;
    const expectedMs = unit.spec.work / v.speed;
    if (expectedMs >= trust.minPlausibleMs && turnaroundMs < expectedMs * trust.plausibleShare) {
      v.hostRecord.suspect = (v.hostRecord.suspect ?? 0) + 1;
    }
  }

  /**
   * The unit has its quorum. Without a trust policy, or for a job the server cannot recompute,
   * it is validated. Otherwise it is held for a check when its agreeing group is not credible
   * enough, or when a random spot-check falls on it (at the highest rate among its hosts).
   */
  private decide(unit: UnitRecord, taskId: TaskId): ValidatedOutcome | VerifyOutcome {
    const trust = this.trust;
    if (!trust || !unit.job.verifiable) return this.validate(unit, taskId);
    const results = unit.results as UnitResult[];
    const centre = quorumCentre(results);
    const groups: UnitResult[][] = [];
    for (const r of results) {
      const g = groups.find((x) => resultsAgree(x[0] as UnitResult, r, unit.job.comparator));
      if (g) g.push(r);
      else groups.push([r]);
    }
    const cred = groupCredibilities(groups.map((g) => g.map((r) => hostCredibility(r.hostRecord, trust))));
    const mine = groups.findIndex((g) => g.includes(centre) || resultsAgree(g[0] as UnitResult, centre, unit.job.comparator));
    let rate = 0;
    // Random checks, and at least one every 1/minSpotRate results of each host, so that a
    // sleeper with a long record is still checked within a bounded number of results.
    const every = trust.minSpotRate > 0 ? Math.ceil(1 / trust.minSpotRate) : Infinity;
    for (const r of results) {
      if (!resultsAgree(centre, r, unit.job.comparator)) continue;
      rate = Math.max(rate, (r.hostRecord.sinceCheck ?? 0) >= every ? 1 : spotRate(r.hostRecord, trust));
    }
    // The threshold holds where the consumer asked for a quorum; without one, only spot-checks.
    const credible = unit.job.quorum < 2 || (cred[mine] ?? 0) >= trust.threshold;
    if (credible && !(this.random() < rate)) return this.validate(unit, taskId);
    return this.holdForCheck(unit, taskId);
  }

  private holdForCheck(unit: UnitRecord, taskId: TaskId): VerifyOutcome {
    // Counted from the draw, not the verdict: results a host returns while the check runs
    // count toward its next one (reset at the verdict, a long check let them go unchecked).
    for (const r of unit.results ?? []) r.hostRecord.sinceCheck = 0;
    const revoked = this.releaseInstances(unit);
    unit.verifying = true;
    unit.job.held.set(unit.spec.id, unit);
    this.markChecking(unit, 1);
    unit.need = 0;
    this.dequeue(unit);
    const job = unit.job;
    return {
      kind: "verify", jobId: job.spec.id, unitId: unit.spec.id, index: unit.spec.index, taskId,
      kernel: job.spec.kernel, params: job.spec.params, input: unit.spec.input, work: unit.spec.work, revoked,
    };
  }

  /** Releases the unit's live instances; returns them, for their volunteers to be told. */
  private releaseInstances(unit: UnitRecord): ExpiredLease[] {
    const revoked: ExpiredLease[] = [];
    while (unit.instances.length > 0) {
      const t = unit.instances[unit.instances.length - 1] as TaskRecord;
      revoked.push(leaseOf(t));
      this.release(t, true);
    }
    return revoked;
  }

  /** Takes a unit out of the queue's count; its deque entry goes stale and is dropped when a lease meets it. */
  private dequeue(unit: UnitRecord): void {
    if (!unit.queued) return;
    unit.queued = false;
    unit.job.queuedUnits--;
    if (unit.results) unit.job.queuedStarted--;
    this.queuedCount--;
  }

  /** The trusted instance errored or was lost: back to R instances and quorum Q. */
  private distrust(unit: UnitRecord): void {
    unit.trusted = false;
    unit.quorum = quorumOf(unit, unit.job.quorum);
    unit.wanted = Math.max(unit.wanted, unit.job.target);
  }

  /** An instance expired or its volunteer left: it does not count toward maxInstances, it is just replaced. */
  private lost(unit: UnitRecord): void {
    if (unit.trusted) this.distrust(unit);
    this.refresh(unit);
  }

  /** Instances the unit should be issued now, within maxInstances. */
  private needOf(u: UnitRecord): number {
    if (u.done || u.verifying) return 0;
    const n = Math.min(u.wanted, u.job.maxInstances - u.errors) - (u.results?.length ?? 0) - u.instances.length;
    return n > 0 ? n : 0;
  }

  /**
   * Recomputes what the unit needs and queues it at the front if it was not queued. A
   * unit's need only grows outside of leasing (results and errors replace instances,
   * disagreement raises `wanted`), so a queued unit never has to leave the queue here.
   */
  private refresh(unit: UnitRecord): void {
    const job = unit.job;
    if (unit.done || unit.verifying || job.state !== "running") return;
    unit.need = this.needOf(unit);
    if (unit.need > 0 && !unit.queued) {
      unit.queued = true;
      job.queue.pushFront(unit);
      job.queuedUnits++;
      if (unit.results) job.queuedStarted++;
      this.queuedCount++;
      this.rotation.add(job);
    }
  }

  /** Best case: the largest group plus every instance still allowed all agreeing. */
  private canReachQuorum(u: UnitRecord): boolean {
    return u.best + u.job.maxInstances - (u.results?.length ?? 0) - u.errors >= u.quorum;
  }

  private addResult(unit: UnitRecord, r: UnitResult): void {
    const job = unit.job;
    let results = unit.results;
    if (results === undefined) {
      unit.results = results = [];
      job.started.add(unit);
      job.pendingUnits++;
      if (unit.queued) job.queuedStarted++;
    }
    addAgreement(unit, results, r, job.comparator);
    r.hostRecord.awaiting = (r.hostRecord.awaiting ?? 0) + 1;
    r.hostRecord.sinceCheck = (r.hostRecord.sinceCheck ?? 0) + 1;
    job.pendingResults++;
    this.pendingResultCount++;
  }

  private recoveredResult(r: RecoveredResult): UnitResult {
    if (!r.host || !r.account) throw new Error(`pending result ${r.taskId}: host and account are required`);
    return {
      taskId: r.taskId,
      volunteer: undefined,
      host: r.host,
      account: r.account,
      hostRecord: recordIn(this.hostRecords, r.host, r.hostRecord),
      accountRecord: recordIn(this.accountRecords, r.account, r.accountRecord),
      output: r.output,
      digest: r.digest,
      turnaroundMs: undefined,
      agree: 1,
    };
  }

  /**
   * The unit is decided: by its quorum, or (`judge`) by the server's recomputation or by the
   * owner. Settles records (not for the owner's decisions: they prove nothing to the platform),
   * revokes its other instances, maybe ends the job.
   */
  private validate(unit: UnitRecord, taskId: TaskId, judge?: { by: "server" | "owner"; truth: UnitResult }): ValidatedOutcome {
    const job = unit.job;
    // None when the server computed a unit that only errored (ErrorOutcome.verify).
    const results = unit.results ?? [];
    const centre = judge?.truth ?? quorumCentre(results);
    const byOwner = judge?.by === "owner";
    const valid: ResultRef[] = [];
    const invalid: ResultRef[] = [];
    let audit: ResultRef[] | undefined;
    for (const r of results) {
      r.hostRecord.awaiting = (r.hostRecord.awaiting ?? 1) - 1;
      if (r === centre || resultsAgree(centre, r, job.comparator)) {
        if (!byOwner) {
          creditValid(r.hostRecord, r.turnaroundMs);
          creditValid(r.accountRecord, r.turnaroundMs);
        }
        if (judge?.by === "server") this.passCheck(r.hostRecord, r.accountRecord);
        valid.push(refOf(r));
        if (!judge && job.auditable && this.drawAudit(r.hostRecord)) (audit ??= []).push(refOf(r));
      } else {
        if (!byOwner) {
          chargeInvalid(r.hostRecord);
          chargeInvalid(r.accountRecord);
        }
        invalid.push(refOf(r));
      }
    }
    const revoked = this.releaseInstances(unit);
    this.dequeue(unit);
    unit.done = true;
    unit.need = 0;
    unit.results = undefined;
    job.started.delete(unit);
    if (results.length > 0) job.pendingUnits--;
    job.pendingResults -= results.length;
    this.pendingResultCount -= results.length;
    job.done++;
    job.doneHeld++;
    this.shedDone(job);
    const jobDone = job.done >= (job.spec.completeAt ?? job.total);
    // Closed before every unit was (completeAt): the copies still running are revoked too.
    if (jobDone) revoked.push(...this.endJob(job, "completed"));
    return {
      kind: "validated",
      jobId: job.spec.id,
      unitId: unit.spec.id,
      index: unit.spec.index,
      work: unit.spec.work,
      taskId,
      canonical: centre.output,
      valid,
      invalid,
      revoked,
      jobDone,
      ...(judge?.by === "server" ? { checked: true, caught: invalid } : {}),
      ...(byOwner ? { byOwner: true } : {}),
      ...(audit ? { audit } : {}),
    };
  }

  /**
   * Whether to audit an accepted result of this host: at its spot-check rate (at least one in
   * every 1/minSpotRate results), and never while an audit of its results is in flight, so a
   * newcomer's first results cost one audit, not one each.
   */
  private drawAudit(host: ReliabilityRecord): boolean {
    const trust = this.trust;
    if (!trust || host.auditing) return false;
    const every = trust.minSpotRate > 0 ? Math.ceil(1 / trust.minSpotRate) : Infinity;
    const rate = (host.sinceCheck ?? 0) >= every ? 1 : spotRate(host, trust);
    if (!(this.random() < rate)) return false;
    host.auditing = true;
    host.sinceCheck = 0; // from the draw, as holdForCheck
    return true;
  }

  /**
   * Keeps an account from the job's units (every round of an iterative job, `family` being
   * the job's own id): its audited result differed from the server's computation. Not a ban:
   * the server's recompute of a consumer's program is no proof against the volunteer (the
   * program may compute differently there on purpose), so the volunteer loses only this job.
   * False if the job has ended already (nothing to keep it from).
   */
  barFromJob(family: string, account: AccountId): boolean {
    if (this.ended.has(family)) return false;
    let set = this.barred.get(family);
    if (!set) {
      this.barred.set(family, (set = new Set()));
      for (const job of this.jobs.values()) if (jobFamily(job.spec.id) === family) job.barred = set;
    }
    set.add(account);
    return true;
  }

  /** Lets every account take the job's units again (its audits were found meaningless), or forgets the job. */
  unbarFromJob(family: string): void {
    this.barred.get(family)?.clear();
    this.barred.delete(family);
  }

  /**
   * The job ended (every way a job ends passes here): its barred accounts are forgotten, and a
   * verdict of one of its audits that comes in later (audits are paced) makes no new entry.
   */
  jobEnded(family: string): void {
    this.unbarFromJob(family);
    this.ended.add(family);
    // Audits lag a job's end by seconds, not thousands of jobs.
    if (this.ended.size > ENDED_KEPT) this.ended.delete(this.ended.values().next().value!);
  }

  /**
   * The server recomputed an audited result (ValidatedOutcome.audit): right, its host and
   * account passed a spot-check; wrong, they get an invalid result on their record (the caller
   * keeps the account from the job: barFromJob). `passed` undefined: the audit could not be had; nothing moves.
   */
  audited(ref: ResultRef, passed: boolean | undefined): void {
    const host = this.hostRecords.get(ref.host);
    const account = this.accountRecords.get(ref.account);
    if (!host || !account) return;
    host.auditing = false;
    if (passed === undefined) return;
    if (!passed) {
      chargeInvalid(host);
      chargeInvalid(account);
      return;
    }
    this.passCheck(host, account);
    // Its first pass may take it off probation: its sockets may take more now.
    for (const v of this.volunteers.values()) if (v.hostRecord === host) this.updateHungry(v);
  }

  /** The unit cannot reach its quorum within maxInstances: the job fails. Records stay as they are. */
  private failUnit(unit: UnitRecord, taskId: TaskId, reason = describeNoQuorum(unit)): UnitFailedOutcome {
    const job = unit.job;
    const invalid = (unit.results ?? []).map(refOf);
    job.lastError = reason;
    const dropped = this.endJob(job, "failed");
    return { kind: "unit-failed", jobId: job.spec.id, unitId: unit.spec.id, index: unit.spec.index, taskId, reason, invalid, dropped };
  }

  /** Unlinks a live task everywhere. `inHeap` is false when the heap already popped it. */
  private release(task: TaskRecord, inHeap: boolean): void {
    task.live = false;
    if (inHeap) this.leases.discard();
    this.tasks.delete(task.id);
    task.volunteer.held.delete(task);
    if (this.volunteers.get(task.volunteer.id) === task.volunteer) this.updateHungry(task.volunteer);
    const inst = task.unit.instances;
    const i = inst.indexOf(task);
    if (i >= 0) {
      if (inst.length === 1) task.unit.instances = NO_INSTANCES;
      else {
        inst[i] = inst[inst.length - 1] as TaskRecord;
        inst.pop();
      }
    }
    task.job.live.delete(task);
  }

  private endJob(job: JobRecord, state: Exclude<JobState, "running">): ExpiredLease[] {
    const dropped: ExpiredLease[] = [];
    if (job.pendingResults > 0) {
      for (const u of job.units) {
        if (u.done) continue;
        if (u.verifying) this.markChecking(u, -1);
        for (const r of u.results ?? []) r.hostRecord.awaiting = (r.hostRecord.awaiting ?? 1) - 1;
      }
    }
    for (const t of [...job.live]) {
      dropped.push(leaseOf(t));
      this.release(t, true);
    }
    this.queuedCount -= job.queuedUnits;
    job.queuedUnits = 0;
    job.queuedStarted = 0;
    job.queue.clear();
    this.rotation.remove(job);
    this.pendingResultCount -= job.pendingResults;
    job.pendingResults = 0;
    job.pendingUnits = 0;
    job.started.clear();
    if (job.state === "running") this.runningJobCount--;
    this.speculative.delete(job);
    job.state = state;
    return dropped;
  }

  /**
   * Drops done units from their job's array once they are half of it (a new array: loops
   * over the old one, which may have validated the unit, go on over the old one). Each unit
   * is copied O(1) times on average, as the lease heap's compaction.
   */
  private shedDone(job: JobRecord): void {
    if (job.doneHeld < SHED_MIN || job.doneHeld * 2 < job.units.length) return;
    job.units = job.units.filter((u) => !u.done);
    job.doneHeld = 0;
  }

  private updateHungry(v: VolunteerRecord): void {
    if (v.held.size < v.window) this.hungry.add(v);
    else this.hungry.delete(v);
  }

  private snapshot(job: JobRecord): JobProgress {
    return {
      jobId: job.spec.id,
      state: job.state,
      total: job.total,
      queued: job.queuedUnits,
      running: job.live.size,
      done: job.done,
      pending: job.pendingUnits,
      instancesReturned: job.returned,
    };
  }
}

/** The socket returned a result or an error: it is not quiet (quiet.ts). */
function answered(v: VolunteerRecord, now: number): void {
  v.answeredAt = now;
  v.quietTold = false;
}

/** No host or account gets two instances of one unit, counting live ones and results. */
function eligible(u: UnitRecord, v: VolunteerRecord): boolean {
  const barred = u.job.barred;
  if (barred !== undefined && barred.has(v.account)) return false;
  const inst = u.instances;
  for (let i = 0; i < inst.length; i++) {
    const w = (inst[i] as TaskRecord).volunteer;
    if (w.host === v.host || w.account === v.account) return false;
  }
  const results = u.results;
  if (results !== undefined) {
    for (let i = 0; i < results.length; i++) {
      const r = results[i] as UnitResult;
      if (r.host === v.host || r.account === v.account) return false;
    }
  }
  const errored = u.erroredBy;
  if (errored !== undefined) {
    for (let i = 0; i < errored.length; i++) {
      const e = errored[i]!;
      if (e.host === v.host || e.account === v.account) return false;
    }
  }
  return true;
}

/** The live record of a host or account, created from `seed` (or empty) on first sight. */
function recordIn<K>(map: Map<K, ReliabilityRecord>, key: K, seed: ReliabilityRecord | undefined): ReliabilityRecord {
  let r = map.get(key);
  if (r === undefined) {
    r = seed ? copyRecord(seed) : emptyRecord();
    map.set(key, r);
  }
  return r;
}

/** Whom an error on a unit speaks for, toward its maxErrors and maxInstances (VolunteerInfo.voice). */
function errorVoice(v: VolunteerRecord): string {
  return v.voice ?? `host:${v.host}`;
}

/** A unit's errors, for its job's error: the program's (or kernel's) own message first. */
function describeErrors(unit: UnitRecord, error: string): string {
  const hosts = unit.erroredBy?.length ?? unit.errors;
  return `${error} (unit ${unit.spec.index} failed on ${hosts} host${hosts === 1 ? "" : "s"})`;
}

function refOf(r: UnitResult): ResultRef {
  const ref: ResultRef = { taskId: r.taskId, host: r.host, account: r.account, output: r.output, digest: r.digest };
  if (r.volunteer !== undefined) ref.volunteer = r.volunteer;
  if (r.turnaroundMs !== undefined) ref.turnaroundMs = r.turnaroundMs;
  return ref;
}

function leaseOf(t: TaskRecord): ExpiredLease {
  return { taskId: t.id, volunteerId: t.volunteer.id, jobId: t.job.spec.id, unitId: t.unit.spec.id };
}

/** The result whose arrival decides the unit: its last one. */
/** The last result's task; "server" for a unit that only errored and the server computed. */
function lastTaskId(unit: UnitRecord): TaskId {
  const results = unit.results;
  return results?.length ? (results[results.length - 1] as UnitResult).taskId : "server";
}

function checkReplication(jobId: JobId, { target, quorum, maxInstances }: ReplicationSpec): void {
  if (![target, quorum, maxInstances].every(Number.isInteger) || !(1 <= quorum && quorum <= target && target <= maxInstances)) {
    throw new RangeError(
      `job ${jobId}: replication needs integers 1 <= quorum <= target <= maxInstances, got quorum ${quorum}, target ${target}, maxInstances ${maxInstances}`,
    );
  }
}

function checkWindow(window: number): void {
  if (!(Number.isInteger(window) && window >= 0)) {
    throw new RangeError(`window must be an integer >= 0, got ${window}`);
  }
}

function checkComparator(jobId: JobId, c: Comparator): void {
  if (c.kind === "exact") return;
  if (c.kind !== "tolerance" || !(c.relative >= 0 && Number.isFinite(c.relative) && c.absolute >= 0 && Number.isFinite(c.absolute))) {
    throw new RangeError(`job ${jobId}: comparator must be exact, or tolerance with finite relative and absolute >= 0`);
  }
}

/** How many ended jobs the scheduler remembers, to ignore their late audit verdicts. */
const ENDED_KEPT = 4096;

/** A job's own id: the scheduler's id of a round ("<id>~r<round>") or of a cluster slice ("<id>@<slice>") without its suffix. */
function jobFamily(schedulerId: string): string {
  const i = schedulerId.search(/[~@]/);
  return i < 0 ? schedulerId : schedulerId.slice(0, i);
}
