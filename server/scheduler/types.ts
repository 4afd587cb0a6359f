// Plain data shared by the scheduler core and its callers. Time is always passed in
// (milliseconds since the epoch); the core never reads a clock.

export type JobId = string;
export type UnitId = string;
export type TaskId = string;
/** One volunteer socket (the coordinator's connection key). */
export type VolunteerId = string;
/** One volunteer install (a browser profile or a CLI install); several sockets may share one. */
export type HostId = string;
/** Who is credited for a host's work: `user:<id>` or `anon:<volunteerId>`. */
export type AccountId = string;

/** One piece of a job's work, computed by a volunteer as one task instance. */
export interface UnitSpec {
  id: UnitId;
  /** Position in the job; outputs are reduced in this order. */
  index: number;
  input: unknown;
  /** Estimated work in reference CPU-milliseconds; used for pricing and payouts. */
  work: number;
  /**
   * The data the unit reads (an input blob's hash), if other units read it too: it goes to
   * the volunteer that last took a unit of the same data, which holds it (locality.ts).
   */
  locality?: string;
}

export interface ReplicationSpec {
  /** R: instances of a unit issued up front (to R different hosts and accounts). */
  target: number;
  /** Q: agreeing results needed to validate a unit. */
  quorum: number;
  /**
   * M: most instances ever counted for one unit: results and errors that came back.
   * Instances that expired or whose volunteer left do not count.
   */
  maxInstances: number;
}

/** How two results of one unit are compared. */
export type Comparator =
  | { kind: "exact" }
  /**
   * Same structure, keys and strings; numbers agree when within
   * max(absolute, relative * max(|a|, |b|)) of each other.
   */
  | { kind: "tolerance"; relative: number; absolute: number };

export interface JobSpec {
  id: JobId;
  kernel: string;
  params: unknown;
  units: UnitSpec[];
  /** How long a volunteer may hold a task before it is given to someone else. */
  leaseMs: number;
  /** A unit whose instances error this many times fails the job. */
  maxErrors: number;
  /** Defaults to DEFAULT_REPLICATION. Needs 1 <= quorum <= target <= maxInstances. */
  replication?: ReplicationSpec;
  /** Let hosts with a long record of valid results compute a unit alone (BOINC adaptive replication). Default false. */
  adaptive?: boolean;
  /** Defaults to exact (digest equality). */
  comparator?: Comparator;
  /**
   * The server can recompute a unit itself (built-in kernels): with a trust policy, units
   * whose agreeing group is not credible enough, disagreements and random spot-checks are
   * settled by that recomputation (a "verify" outcome) instead of by more replicas.
   */
  verifiable?: boolean;
  /**
   * The server can recompute a unit, but slowly and off the critical path (an iterative
   * program's unit, in the server's sandbox): with a trust policy, results are decided by their
   * quorum as without one, and a share of the accepted ones (the hosts' spot-check rates, one
   * audit in flight per host) is returned in `ValidatedOutcome.audit` to be recomputed after
   * the fact; answer with `audited`.
   */
  auditable?: boolean;
  /**
   * The account that submitted the job. A consumer trusts their own machines: a result from a
   * host of this account decides its unit alone (no second copy, no spot-check), and the
   * owner pays nobody for it.
   */
  owner?: AccountId;
  /**
   * The most of this job's units one host is given while another host online has had fewer
   * (then the cap is lifted, so a lone volunteer still finishes the job). For merges that
   * outvote a few outliers (a trimmed mean drops k outputs at each end): one fast host that
   * sends garbage cannot take more units than the merge drops.
   */
  maxUnitsPerHost?: number;
  /**
   * The job is complete once this many of its units are validated (default: all of them):
   * a round of an iterative job that closes at a share of its shards, so that a slow
   * volunteer cannot hold it. The units still running are revoked.
   */
  completeAt?: number;
  /**
   * Once nothing of the job is queued, a volunteer with room gets a copy of a unit still
   * running elsewhere (one extra copy a unit, the longest running first): the first result
   * decides it and the other copy is revoked. For the rounds of iterative jobs, whose
   * last unit otherwise holds the whole round. Only for units that need one result.
   */
  speculate?: boolean;
}

export const DEFAULT_REPLICATION: Readonly<ReplicationSpec> = Object.freeze({ target: 2, quorum: 2, maxInstances: 5 });

/**
 * A host's or an account's track record. Kept by the scheduler in memory, seeded from the
 * database the first time a host or account is seen; the coordinator persists it.
 */
export interface ReliabilityRecord {
  /** Valid results in a row since the last invalid result or error: drives adaptive replication. */
  consecutiveValid: number;
  valid: number;
  invalid: number;
  errors: number;
  /** Sum and count of lease-to-result times of valid results. */
  turnaroundMsTotal: number;
  turnaroundCount: number;
  /** Spot-checks passed: results the server recomputed and found right (absent: 0). */
  spotChecks?: number;
  /** Implausibly fast results since the last passed spot-check (in memory only; absent: 0). */
  suspect?: number;
  /** Results returned and not yet decided (in memory only; absent: 0). */
  awaiting?: number;
  /** Of those, results in units the server is checking now (in memory only; absent: 0). */
  checking?: number;
  /** Results since the last spot-check of its results was drawn (in memory only; absent: 0). */
  sinceCheck?: number;
  /** One of its accepted results is being audited now (in memory only). */
  auditing?: boolean;
}

export interface VolunteerInfo {
  /** Most tasks the socket may hold at once. */
  window: number;
  host: HostId;
  account: AccountId;
  /** Stored record of the host, used only if the scheduler has not seen the host yet. */
  hostRecord?: ReliabilityRecord;
  /** Stored record of the account, used only if the scheduler has not seen the account yet. */
  accountRecord?: ReliabilityRecord;
  /** Host speed relative to the reference machine (its benchmark; default 1): judges how fast a result may plausibly come back. */
  speed?: number;
  /** The network the host connects from (e.g. an IPv4 /24): replicas of a unit go to different networks while several are online. */
  network?: string;
  /**
   * Whom its errors speak for toward a unit's maxErrors and instances (see errorVoice in
   * scheduler.ts): ids that share one count once. Absent: the host alone.
   */
  voice?: string;
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

/** One result of a unit, as reported in outcomes. */
export interface ResultRef {
  taskId: TaskId;
  /** The socket that returned it; absent for results recovered after a restart. */
  volunteer?: VolunteerId;
  host: HostId;
  account: AccountId;
  output: unknown;
  digest: string;
  /** Lease to result, in ms; absent for results recovered after a restart. */
  turnaroundMs?: number;
}

/** A result for a task that is no longer leased to the sender. Changes nothing. */
export interface StaleOutcome {
  kind: "stale";
  /**
   * unknown-task: never leased, already returned, expired, revoked (its unit was decided or
   * its job ended); not-holder: leased to another socket.
   */
  reason: "unknown-task" | "not-holder";
}

/** The result is kept and waits for more results of its unit. */
export interface PendingOutcome {
  kind: "pending";
  jobId: JobId;
  unitId: UnitId;
  taskId: TaskId;
  /** The unit waits in the queue for more instances (e.g. results disagreed): dispatch. */
  requeued: boolean;
}

/** The unit reached its quorum. Reported exactly once per unit. */
export interface ValidatedOutcome {
  kind: "validated";
  jobId: JobId;
  unitId: UnitId;
  index: number;
  work: number;
  /** The result whose arrival decided the unit (at recovery: the last recovered one). */
  taskId: TaskId;
  /** Output of the agreeing group (its central member, for a tolerance comparator). */
  canonical: unknown;
  /** The agreeing results; their hosts and accounts got a valid result on their record. */
  valid: ResultRef[];
  /** The other results; their hosts and accounts got an invalid result on their record. */
  invalid: ResultRef[];
  /** Other live instances of the unit, released: tell their volunteers to drop them. */
  revoked: ExpiredLease[];
  jobDone: boolean;
  /** Decided by the server's own recomputation: `valid` passed a spot-check. */
  checked?: boolean;
  /** Results that a spot-check proved wrong: their hosts and accounts are to be banned. */
  caught?: ResultRef[];
  /** Accepted results to recompute after the fact (an auditable job's spot-checks); answer each with `audited`. */
  audit?: ResultRef[];
  /**
   * Decided by the job's owner (a result of one of the owner's hosts, or the owner accepting
   * unconfirmed results): nobody's record changed; `invalid` are not paid, and not held
   * against their hosts either, since the platform proved nothing.
   */
  byOwner?: boolean;
}

/**
 * The unit needs the server's own recomputation before it is decided (its agreeing group is
 * not credible enough, its results disagree, or a random spot-check fell on it). No more
 * instances are issued meanwhile; answer with `checked` (or `uncheckable`).
 */
export interface VerifyOutcome {
  kind: "verify";
  jobId: JobId;
  unitId: UnitId;
  index: number;
  taskId: TaskId;
  kernel: string;
  params: unknown;
  input: unknown;
  /** The unit's estimated work (UnitSpec.work): a tiny one is checked on the event loop. */
  work: number;
  /** Other live instances of the unit, released: tell their volunteers to drop them. */
  revoked: ExpiredLease[];
}

/**
 * The unit cannot reach its quorum within maxInstances: the job has failed, with `reason`
 * as its jobError. Records are left alone: without a quorum nobody is known to be wrong.
 */
export interface UnitFailedOutcome {
  kind: "unit-failed";
  jobId: JobId;
  unitId: UnitId;
  index: number;
  taskId: TaskId;
  reason: string;
  /** Every result the unit got; none is paid. */
  invalid: ResultRef[];
  /** Every live lease of the job, released: tell their volunteers to drop them. */
  dropped: ExpiredLease[];
}

export type ResultOutcome = StaleOutcome | PendingOutcome | ValidatedOutcome | UnitFailedOutcome | VerifyOutcome;

/** A kernel error was recorded against the unit, the host and the account. */
export interface ErrorOutcome {
  kind: "error-recorded";
  jobId: JobId;
  unitId: UnitId;
  taskId: TaskId;
  host: HostId;
  account: AccountId;
  /** The unit waits in the queue for another instance. */
  requeued: boolean;
  /** The unit reached maxErrors or can no longer reach its quorum: the job failed. */
  jobFailed: boolean;
  /** When the job failed: its other leases, released (empty otherwise). */
  dropped: ExpiredLease[];
  /**
   * The unit errored past its limits on a kernel the server runs itself: rather than fail the
   * job on volunteers' word (three free ids answering errors failed anyone's job), the server
   * computes the unit, and its answer decides it. Act on it as on a "verify" outcome.
   */
  verify?: VerifyOutcome;
}

export type FailOutcome = StaleOutcome | ErrorOutcome;

/** Results that wait for a copy no volunteer online may compute (another account's, usually). */
export interface QuorumWait {
  /** Units waiting so. */
  units: number;
  /** Their results. */
  results: number;
}

/** What sweep() found: quorum waits by job and by host, and jobs it failed. */
export interface SweepReport {
  waits: Map<JobId, QuorumWait>;
  /** Results of each host that wait so. */
  hostWaits: Map<HostId, number>;
  /**
   * Jobs failed because a unit errored on every host online that may take it, and no other
   * came for `errorWaitMs`; like an ErrorOutcome with jobFailed.
   */
  failed: Array<{ jobId: JobId; unitId: UnitId; reason: string; dropped: ExpiredLease[] }>;
  /** Units offered as copies because every holder of theirs is quiet (quiet.ts): hungry volunteers may take them. */
  copies: number;
  /** Sockets found quiet on units they hold, once per silence: they let work lapse as surely as a lease. */
  quiet: VolunteerId[];
}

/** Outcomes of units decided while a job was being added (recovered results). */
export type RecoveryOutcome = ValidatedOutcome | UnitFailedOutcome | VerifyOutcome;

/** A result received and persisted before a restart, but not yet validated. */
export interface RecoveredResult {
  unitId: UnitId;
  taskId: TaskId;
  host: HostId;
  account: AccountId;
  output: unknown;
  digest: string;
  /** Seeds for hosts and accounts the scheduler has not seen yet (else they start from zero). */
  hostRecord?: ReliabilityRecord;
  accountRecord?: ReliabilityRecord;
}

/** State rebuilt from the database after a restart. */
export interface RecoveredState {
  /** Units already validated: not queued. */
  done?: Iterable<UnitId>;
  /** Results awaiting quorum: they count toward quorum, maxInstances and distinctness. */
  pending?: Iterable<RecoveredResult>;
}

export interface AddJobResult {
  progress: JobProgress;
  /**
   * Units decided by recovered results alone, in unit order (validations first; a
   * unit-failed one last, and then the job has failed). Empty for a new job.
   */
  outcomes: RecoveryOutcome[];
}

export type JobState = "running" | "completed" | "failed" | "cancelled";

export interface JobProgress {
  jobId: JobId;
  state: JobState;
  total: number;
  /** Units waiting for at least one more instance. */
  queued: number;
  /** Live instances (leases). */
  running: number;
  /** Validated units. */
  done: number;
  /** Units with at least one result, waiting for quorum (0 once the job ended). */
  pending: number;
  /** Results and errors that came back (recovered pending results included). */
  instancesReturned: number;
}

export interface ExpiredLease {
  taskId: TaskId;
  volunteerId: VolunteerId;
  jobId: JobId;
  unitId: UnitId;
}

/** Counters kept up to date on every change, so reading them is O(1). */
export interface SchedulerStats {
  /** Connected volunteer sockets. */
  volunteers: number;
  /** Units of running jobs waiting for at least one more instance. */
  queued: number;
  /** Live task instances (leases). */
  leased: number;
  runningJobs: number;
  /** Results of running jobs waiting for their unit's quorum. */
  pendingResults: number;
  /** Jobs with accounts kept from them after a disputed audit (barFromJob). */
  barredJobs: number;
}

/** A live lease, as seen from outside the scheduler. */
export interface TaskInfo {
  taskId: TaskId;
  jobId: JobId;
  unitId: UnitId;
  index: number;
  volunteerId: VolunteerId;
  host: HostId;
  account: AccountId;
  deadline: number;
}
