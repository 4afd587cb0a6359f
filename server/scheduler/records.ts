// The scheduler's internal state. Records point at each other directly so the hot paths
// (lease, complete, expire) follow references instead of doing map lookups.

import type { Deque } from "./deque.js";
import type {
  AccountId,
  Comparator,
  HostId,
  JobSpec,
  JobState,
  ReliabilityRecord,
  TaskId,
  UnitId,
  UnitSpec,
  VolunteerId,
} from "./types.js";

export interface UnitRecord {
  readonly spec: UnitSpec;
  readonly job: JobRecord;
  /** Validated. Terminal. */
  done: boolean;
  /**
   * Errors that count toward the job's maxErrors and the unit's maxInstances: one per distinct
   * voice among the hosts that reported one (see errorVoice).
   */
  errors: number;
  /**
   * Hosts and accounts that reported an error on this unit, and the voice each spoke with.
   * They never get it again, so one volunteer's errors cannot fail a job alone.
   */
  erroredBy: Array<{ host: string; account: string; voice: string }> | undefined;
  /** Live task instances, on distinct hosts and accounts; NO_INSTANCES when there are none. */
  instances: TaskRecord[];
  /** Results received and not yet validated; allocated on the first one. */
  results: UnitResult[] | undefined;
  /** Size of the largest group of agreeing results (0 without results). */
  best: number;
  /**
   * How many results the unit is known to need: R up front (1 when trusted), raised when
   * results disagree to (results so far + results the largest group still lacks).
   */
  wanted: number;
  /** Quorum in force: the job's Q, or 1 while the unit is trusted to one reliable host. */
  quorum: number;
  /** Instances to issue now; the unit is in its job's queue exactly when this is > 0. */
  need: number;
  /**
   * In the job's queue. A unit validated while queued keeps a stale entry in the deque
   * (removing from the middle would be O(n)); entries of done units are dropped when met.
   */
  queued: boolean;
  /** An instance was leased at some point (adaptive replication decides on the first). */
  leasedOnce: boolean;
  /** Its only instance went to a host trusted by adaptive replication. */
  trusted: boolean;
  /** Waiting for the server's recomputation (a "verify" outcome): no instances are issued. */
  verifying: boolean;
  /**
   * Its check could not run (see Scheduler.uncheckable): it wants two agreeing results from
   * different hosts, whatever the job's quorum.
   */
  unchecked?: boolean;
  /** Its errors reached the limit and the server computed it instead (ErrorOutcome.verify): once only. */
  errorsChecked?: boolean;
  /** The last error a volunteer reported for it. */
  lastError?: string;
  /** Since when (ms) it has errored and no volunteer online may take it (see sweep()). */
  stalledSince?: number;
}

export interface UnitResult {
  readonly taskId: TaskId;
  readonly volunteer: VolunteerId | undefined;
  readonly host: HostId;
  readonly account: AccountId;
  readonly hostRecord: ReliabilityRecord;
  readonly accountRecord: ReliabilityRecord;
  readonly output: unknown;
  readonly digest: string;
  readonly turnaroundMs: number | undefined;
  /** Results of the unit (itself included) that agree with this one. */
  agree: number;
}

export interface JobRecord {
  /** The job as added, less its units (empty here): `units` below holds them, and lets the done ones go. */
  readonly spec: JobSpec;
  /** Submission order, for the round-robin. */
  readonly seq: number;
  /** When it was added: how long its units have waited for the volunteers that hold their data. */
  readonly addedAt: number;
  /** Replication in force; the owner may lower it while the job runs. */
  target: number;
  quorum: number;
  maxInstances: number;
  readonly adaptive: boolean;
  readonly verifiable: boolean;
  readonly auditable: boolean;
  readonly comparator: Comparator;
  /**
   * Accounts whose results this job's audits found wrong: they get none of its units again
   * (shared by every round of an iterative job, see Scheduler.barFromJob). Absent: none.
   */
  barred?: Set<string>;
  state: JobState;
  /**
   * Units by ascending index: every unit not done yet, and done ones until the next
   * shedding (Scheduler.shedDone). A done unit is nothing but memory (a job of 10,000 units
   * held ~3 MB until it ended), so it leaves once done units are half of the array.
   */
  units: UnitRecord[];
  /** Done units still in `units`. */
  doneHeld: number;
  /** Units in the job, done or not. */
  readonly total: number;
  /** Units waiting for instances (plus stale entries of units validated meanwhile); emptied when the job ends. */
  readonly queue: Deque<UnitRecord>;
  /** Units in the queue that are not stale. */
  queuedUnits: number;
  /** Of those, units that already hold results: all a host on probation with a full window may take. */
  queuedStarted: number;
  /** Live instances of this job's units, so cancelling does not scan every unit. */
  readonly live: Set<TaskRecord>;
  /** Units held for the server's check (`verifying`) by id: its answer finds its unit without a scan. */
  readonly held: Map<UnitId, UnitRecord>;
  /** With spec.maxUnitsPerHost: instances given to each host so far. */
  readonly perHost?: Map<string, number>;
  done: number;
  /**
   * Units that hold results or errors: all the sweep looks at (a job of 10,000 queued units
   * cost it a scan of every one, every second). A unit leaves when it is decided.
   */
  readonly started: Set<UnitRecord>;
  /** Units with results awaiting quorum, and how many results they hold (running jobs only). */
  pendingUnits: number;
  pendingResults: number;
  /** Results and errors that came back. */
  returned: number;
  lastError: string | undefined;
  inRotation: boolean;
}

export interface VolunteerRecord {
  readonly id: VolunteerId;
  readonly host: HostId;
  readonly account: AccountId;
  readonly hostRecord: ReliabilityRecord;
  readonly accountRecord: ReliabilityRecord;
  /** Benchmark speed relative to the reference machine. */
  readonly speed: number;
  readonly network: string | undefined;
  /** See VolunteerInfo.voice. */
  readonly voice: string | undefined;
  window: number;
  readonly held: Set<TaskRecord>;
  /** When this socket last returned a result or an error (undefined: never); see quiet.ts. */
  answeredAt?: number;
  /** Its quiet units were offered as copies since its last answer: it is told so once (SweepReport.quiet). */
  quietTold?: boolean;
}

export interface TaskRecord {
  readonly id: TaskId;
  readonly job: JobRecord;
  readonly unit: UnitRecord;
  readonly volunteer: VolunteerRecord;
  readonly leasedAt: number;
  deadline: number;
  /** False once released; the lease heap drops the entry lazily. */
  live: boolean;
}

/**
 * The instances of every unit that has none: a job holds its units until it ends, and an
 * array once pushed to keeps a backing store of 16 slots after its last pop (~180 bytes a
 * unit, a third of a done unit's memory). Frozen, so a push to it fails loudly.
 */
export const NO_INSTANCES: TaskRecord[] = Object.freeze([]) as unknown as TaskRecord[];
