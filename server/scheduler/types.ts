// Plain data shared by the scheduler core and its callers. Time is always passed in
// (milliseconds since the epoch); the core never reads a clock.

export type JobId = string;
export type UnitId = string;
export type TaskId = string;
export type VolunteerId = string;

/** One piece of a job's work, computed by a volunteer as one task instance. */
export interface UnitSpec {
  id: UnitId;
  /** Position in the job; outputs are reduced in this order. */
  index: number;
  input: unknown;
  /** Estimated work in reference CPU-milliseconds; used for pricing and payouts. */
  work: number;
}

export interface JobSpec {
  id: JobId;
  kernel: string;
  params: unknown;
  units: UnitSpec[];
  /** How long a volunteer may hold a task before it is given to someone else. */
  leaseMs: number;
  /** A unit whose instances error this many times fails the job. */
  maxErrors: number;
}

/** What the coordinator sends to a volunteer for one leased task instance. */
export interface TaskAssignment {
  taskId: TaskId;
  jobId: JobId;
  unitId: UnitId;
  index: number;
  kernel: string;
  params: unknown;
  input: unknown;
  deadline: number;
}

export type ResultOutcome =
  | { kind: "accepted"; jobId: JobId; unitId: UnitId; index: number; work: number; output: unknown; jobDone: boolean }
  | { kind: "stale"; reason: "unknown-task" | "not-holder" }
  | {
      kind: "error-recorded";
      jobId: JobId;
      unitId: UnitId;
      requeued: boolean;
      jobFailed: boolean;
      /**
       * When the error failed the job: the other leases of the job that were freed, so
       * their volunteers can be told to drop them (empty otherwise).
       */
      dropped?: ExpiredLease[];
    };

export type JobState = "running" | "completed" | "failed" | "cancelled";

export interface JobProgress {
  jobId: JobId;
  state: JobState;
  total: number;
  queued: number;
  running: number;
  done: number;
}

export interface ExpiredLease {
  taskId: TaskId;
  volunteerId: VolunteerId;
  jobId: JobId;
  unitId: UnitId;
}

/** Counters kept up to date on every change, so reading them is O(1). */
export interface SchedulerStats {
  /** Connected volunteers. */
  volunteers: number;
  /** Units of running jobs waiting for a volunteer. */
  queued: number;
  /** Live task instances (leases). */
  leased: number;
  runningJobs: number;
}

/** A live lease, as seen from outside the scheduler. */
export interface TaskInfo {
  taskId: TaskId;
  jobId: JobId;
  unitId: UnitId;
  index: number;
  volunteerId: VolunteerId;
  deadline: number;
}
