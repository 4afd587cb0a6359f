// The scheduler's internal state. Records point at each other directly so the hot paths
// (lease, complete, expire) follow references instead of doing map lookups.

import type { Deque } from "./deque.js";
import type { JobSpec, JobState, TaskId, UnitSpec, VolunteerId } from "./types.js";

export interface UnitRecord {
  readonly spec: UnitSpec;
  readonly job: JobRecord;
  done: boolean;
  /** Errors reported by volunteers for this unit, across all its instances. */
  errors: number;
  /**
   * Live task instances. A list, not a single slot: replication will run several
   * instances of one unit at once on different volunteers.
   */
  instances: TaskRecord[];
}

export interface JobRecord {
  readonly spec: JobSpec;
  /** Submission order, for the round-robin. */
  readonly seq: number;
  state: JobState;
  /** Units by ascending index. */
  readonly units: UnitRecord[];
  /** Units waiting for a volunteer; emptied when the job ends. */
  readonly queue: Deque<UnitRecord>;
  /** Live instances of this job's units, so cancelling does not scan every unit. */
  readonly live: Set<TaskRecord>;
  done: number;
  lastError: string | undefined;
  inRotation: boolean;
}

export interface VolunteerRecord {
  readonly id: VolunteerId;
  window: number;
  readonly held: Set<TaskRecord>;
}

export interface TaskRecord {
  readonly id: TaskId;
  readonly job: JobRecord;
  readonly unit: UnitRecord;
  readonly volunteer: VolunteerRecord;
  deadline: number;
  /** False once released; the lease heap drops the entry lazily. */
  live: boolean;
}
