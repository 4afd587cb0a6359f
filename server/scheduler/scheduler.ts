import { Deque } from "./deque.js";
import { JobRotation } from "./jobRotation.js";
import { LeaseHeap } from "./leaseHeap.js";
import type { JobRecord, TaskRecord, UnitRecord, VolunteerRecord } from "./records.js";
import type {
  ExpiredLease,
  JobId,
  JobProgress,
  JobSpec,
  JobState,
  ResultOutcome,
  SchedulerStats,
  TaskAssignment,
  TaskId,
  TaskInfo,
  UnitId,
  VolunteerId,
} from "./types.js";

export interface SchedulerOptions {
  /**
   * Mixed into every task id. Give each process start a different epoch (e.g. the start
   * time in base 36) so a task id issued after a restart never equals one issued before
   * it, and a result computed for a pre-restart lease can never be taken for a new one.
   */
  epoch?: string;
}

const STALE_UNKNOWN: ResultOutcome = Object.freeze({ kind: "stale", reason: "unknown-task" });
const STALE_NOT_HOLDER: ResultOutcome = Object.freeze({ kind: "stale", reason: "not-holder" });

/**
 * Jobs → work units → task instances leased to volunteers.
 *
 * Pure and synchronous: no I/O, no clock (every time is passed in as `now`, in ms). Every
 * operation costs O(1) or O(log n) per task touched; `stats()` reads counters.
 *
 * Lease expiry only happens in `expireLeases`: until the coordinator calls it, a result for
 * a lease past its deadline is still accepted, because nobody else holds that unit yet and
 * the work would otherwise be wasted.
 */
export class Scheduler {
  private readonly jobs = new Map<JobId, JobRecord>();
  private readonly volunteers = new Map<VolunteerId, VolunteerRecord>();
  private readonly tasks = new Map<TaskId, TaskRecord>();
  private readonly rotation = new JobRotation<JobRecord>();
  // An entry is stale once its task is released, or when its deadline was moved.
  private readonly leases = new LeaseHeap<TaskRecord>((t, key) => t.live && t.deadline === key);
  /** Volunteers holding fewer tasks than their window, in the order they became so. */
  private readonly hungry = new Set<VolunteerRecord>();
  private readonly taskPrefix: string;
  private jobSeq = 0;
  private taskSeq = 0;
  private queuedCount = 0;
  private runningJobCount = 0;

  constructor(options: SchedulerOptions = {}) {
    this.taskPrefix = options.epoch ? `${options.epoch}.` : "";
  }

  // ---- jobs ------------------------------------------------------------------------------

  /**
   * Registers a job and queues its units in index order. `done` lists units already
   * completed (state rebuilt from the database after a restart): they are not queued.
   */
  addJob(spec: JobSpec, _now: number, done?: Iterable<UnitId>): JobProgress {
    if (this.jobs.has(spec.id)) throw new Error(`job ${spec.id} already exists`);
    if (!(Number.isFinite(spec.leaseMs) && spec.leaseMs > 0)) {
      throw new RangeError(`job ${spec.id}: leaseMs must be a positive number`);
    }
    if (!(Number.isInteger(spec.maxErrors) && spec.maxErrors >= 1)) {
      throw new RangeError(`job ${spec.id}: maxErrors must be an integer >= 1`);
    }
    const specs = [...spec.units].sort((a, b) => a.index - b.index);
    const ids = new Set<UnitId>();
    for (const u of specs) {
      if (ids.has(u.id)) throw new Error(`job ${spec.id}: duplicate unit id ${u.id}`);
      ids.add(u.id);
    }
    const doneIds = new Set<UnitId>(done ?? []);
    for (const id of doneIds) {
      if (!ids.has(id)) throw new Error(`job ${spec.id}: done unit ${id} is not in the job`);
    }

    const job: JobRecord = {
      spec,
      seq: this.jobSeq++,
      state: "running",
      units: [],
      queue: new Deque<UnitRecord>(specs.length - doneIds.size),
      live: new Set(),
      done: 0,
      lastError: undefined,
      inRotation: false,
    };
    for (const u of specs) {
      const unit: UnitRecord = { spec: u, job, done: false, errors: 0, instances: [] };
      job.units.push(unit);
      if (doneIds.has(u.id)) {
        unit.done = true;
        job.done++;
      } else {
        job.queue.pushBack(unit);
      }
    }
    this.jobs.set(spec.id, job);

    if (job.done === job.units.length) {
      job.state = "completed";
    } else {
      this.runningJobCount++;
      this.queuedCount += job.queue.size;
      this.rotation.add(job);
    }
    return this.snapshot(job);
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

  /** The last error a volunteer reported for one of the job's units. */
  jobError(jobId: JobId): string | undefined {
    return this.jobs.get(jobId)?.lastError;
  }

  // ---- volunteers ------------------------------------------------------------------------

  addVolunteer(id: VolunteerId, opts: { window: number }): void {
    if (this.volunteers.has(id)) throw new Error(`volunteer ${id} already connected`);
    checkWindow(opts.window);
    const v: VolunteerRecord = { id, window: opts.window, held: new Set() };
    this.volunteers.set(id, v);
    this.updateHungry(v);
  }

  /**
   * Changes how many tasks the volunteer may hold. Lowering it below what the volunteer
   * holds takes nothing away; it just gets no more until it is under the new window.
   */
  setWindow(id: VolunteerId, window: number): void {
    const v = this.volunteers.get(id);
    if (!v) throw new Error(`unknown volunteer ${id}`);
    checkWindow(window);
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
    for (let i = held.length - 1; i >= 0; i--) this.requeueFront((held[i] as TaskRecord).unit);
    this.volunteers.delete(id);
    this.hungry.delete(v);
    return held.map((t) => t.id);
  }

  heldBy(volunteerId: VolunteerId): TaskId[] {
    const v = this.volunteers.get(volunteerId);
    return v ? [...v.held].map((t) => t.id) : [];
  }

  /** How many more tasks the volunteer may be given now (0 for an unknown volunteer). */
  freeSlots(volunteerId: VolunteerId): number {
    const v = this.volunteers.get(volunteerId);
    return v ? Math.max(0, v.window - v.held.size) : 0;
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

  // ---- tasks -----------------------------------------------------------------------------

  /**
   * Fills the volunteer's window, at most `max` tasks, taking one unit from each job with
   * queued work in turn (submission order) so a big job cannot starve a later small one.
   */
  leaseTasks(volunteerId: VolunteerId, now: number, max?: number): TaskAssignment[] {
    const v = this.volunteers.get(volunteerId);
    if (!v) return [];
    let n = v.window - v.held.size;
    if (max !== undefined) n = Math.min(n, Math.floor(max));
    if (!(n > 0)) return [];

    const out: TaskAssignment[] = [];
    while (out.length < n) {
      const job = this.rotation.next();
      if (!job) break;
      const unit = job.queue.popFront() as UnitRecord;
      this.queuedCount--;
      if (job.queue.size === 0) this.rotation.remove(job);
      out.push(this.lease(job, unit, v, now));
    }
    if (out.length > 0) this.updateHungry(v);
    return out;
  }

  completeTask(volunteerId: VolunteerId, taskId: TaskId, output: unknown, _now: number): ResultOutcome {
    const task = this.tasks.get(taskId);
    if (!task) return STALE_UNKNOWN;
    if (task.volunteer.id !== volunteerId) return STALE_NOT_HOLDER;
    this.release(task, true);
    const { job, unit } = task;
    unit.done = true;
    job.done++;
    const jobDone = job.done === job.units.length;
    if (jobDone) this.endJob(job, "completed");
    return {
      kind: "accepted",
      jobId: job.spec.id,
      unitId: unit.spec.id,
      index: unit.spec.index,
      work: unit.spec.work,
      output,
      jobDone,
    };
  }

  /**
   * The kernel threw on the volunteer. The unit goes back to the front of the queue,
   * unless it has now failed `maxErrors` times: then the input (or the kernel) is
   * presumably broken and retrying elsewhere would only burn volunteers' time, so the
   * whole job fails.
   */
  failTask(volunteerId: VolunteerId, taskId: TaskId, error: string, _now: number): ResultOutcome {
    const task = this.tasks.get(taskId);
    if (!task) return STALE_UNKNOWN;
    if (task.volunteer.id !== volunteerId) return STALE_NOT_HOLDER;
    this.release(task, true);
    const { job, unit } = task;
    unit.errors++;
    job.lastError = error;
    const base = { kind: "error-recorded", jobId: job.spec.id, unitId: unit.spec.id } as const;
    if (unit.errors >= job.spec.maxErrors) {
      const dropped = this.endJob(job, "failed");
      return { ...base, requeued: false, jobFailed: true, dropped };
    }
    this.requeueFront(unit);
    return { ...base, requeued: true, jobFailed: false, dropped: [] };
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
    for (let i = due.length - 1; i >= 0; i--) this.requeueFront((due[i] as TaskRecord).unit);
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
    for (const [id, job] of this.jobs) {
      if (job.spec.id !== id) fail(`job ${id} filed under the wrong id`);
      const isRunning = job.state === "running";
      if (isRunning) running++;
      if (job.inRotation !== (isRunning && job.queue.size > 0)) fail(`job ${id} rotation membership`);
      if (!isRunning && (job.queue.size > 0 || job.live.size > 0)) fail(`ended job ${id} holds work`);
      let done = 0;
      let instances = 0;
      for (const u of job.units) {
        if (u.done) done++;
        if (u.done && u.instances.length > 0) fail(`done unit ${u.spec.id} has live instances`);
        instances += u.instances.length;
      }
      if (done !== job.done) fail(`job ${id} done ${job.done}, recount ${done}`);
      if (instances !== job.live.size) fail(`job ${id} live ${job.live.size}, recount ${instances}`);
      const seen = new Set<UnitRecord>();
      for (const u of job.queue) {
        if (u.job !== job) fail(`unit ${u.spec.id} queued under another job`);
        if (u.done || u.instances.length > 0 || seen.has(u)) fail(`unit ${u.spec.id} queued wrongly`);
        seen.add(u);
      }
      if (isRunning && job.done + job.live.size + job.queue.size !== job.units.length) {
        fail(`job ${id} loses units: done ${job.done} live ${job.live.size} queued ${job.queue.size}`);
      }
      queued += job.queue.size;
      live += job.live.size;
    }
    if (queued !== this.queuedCount) fail(`queued ${this.queuedCount}, recount ${queued}`);
    if (running !== this.runningJobCount) fail(`running jobs ${this.runningJobCount}, recount ${running}`);
    if (live !== this.tasks.size) fail(`leased ${this.tasks.size}, recount over jobs ${live}`);
    const members = this.rotation.members();
    for (let i = 1; i < members.length; i++) {
      if ((members[i - 1] as JobRecord).seq >= (members[i] as JobRecord).seq) fail("rotation out of order");
    }
    let held = 0;
    for (const [id, v] of this.volunteers) {
      held += v.held.size;
      for (const t of v.held) if (t.volunteer !== v || this.tasks.get(t.id) !== t) fail(`volunteer ${id} holds a foreign task`);
      if (this.hungry.has(v) !== v.held.size < v.window) fail(`volunteer ${id} hungry flag`);
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

  private lease(job: JobRecord, unit: UnitRecord, v: VolunteerRecord, now: number): TaskAssignment {
    const id = `${unit.spec.id}#${this.taskPrefix}${(++this.taskSeq).toString(36)}`;
    const deadline = now + job.spec.leaseMs;
    const task: TaskRecord = { id, job, unit, volunteer: v, deadline, live: true };
    this.tasks.set(id, task);
    v.held.add(task);
    unit.instances.push(task);
    job.live.add(task);
    this.leases.push(deadline, task);
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
      inst[i] = inst[inst.length - 1] as TaskRecord;
      inst.pop();
    }
    task.job.live.delete(task);
  }

  private requeueFront(unit: UnitRecord): void {
    const job = unit.job;
    if (job.state !== "running" || unit.done) return;
    job.queue.pushFront(unit);
    this.queuedCount++;
    this.rotation.add(job);
  }

  private endJob(job: JobRecord, state: Exclude<JobState, "running">): ExpiredLease[] {
    const dropped: ExpiredLease[] = [];
    for (const t of [...job.live]) {
      dropped.push(leaseOf(t));
      this.release(t, true);
    }
    this.queuedCount -= job.queue.size;
    job.queue.clear();
    this.rotation.remove(job);
    if (job.state === "running") this.runningJobCount--;
    job.state = state;
    return dropped;
  }

  private updateHungry(v: VolunteerRecord): void {
    if (v.held.size < v.window) this.hungry.add(v);
    else this.hungry.delete(v);
  }

  private snapshot(job: JobRecord): JobProgress {
    return {
      jobId: job.spec.id,
      state: job.state,
      total: job.units.length,
      queued: job.queue.size,
      running: job.live.size,
      done: job.done,
    };
  }
}

function leaseOf(t: TaskRecord): ExpiredLease {
  return { taskId: t.id, volunteerId: t.volunteer.id, jobId: t.job.spec.id, unitId: t.unit.spec.id };
}

function checkWindow(window: number): void {
  if (!(Number.isInteger(window) && window >= 0)) {
    throw new RangeError(`window must be an integer >= 0, got ${window}`);
  }
}
