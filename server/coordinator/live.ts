import type { ZodType } from "zod";
import type { JobsWithBlobs } from "./liveBlobs";
import type { Scheduler } from "../scheduler";
import type { JobSpec } from "../scheduler/types";
import type { CoordinatorObserver } from "../monitoring/observer";
import type { VolunteerConn } from "./connection";
import type { Throughput } from "./progress";
import type { SliceFence } from "../services/jobs/batchSql";

/**
 * Millicredits per valid result: one figure when every unit pays the same (a kernel's units
 * usually do), else by unit id. A Map of 10,000 entries per job was ~40 bytes a unit, kept
 * until the job ends.
 */
export type UnitPays = number | Map<string, number>;

export function compactPays(pays: Map<string, number>): UnitPays {
  let one: number | undefined;
  for (const v of pays.values()) {
    if (one === undefined) one = v;
    else if (v !== one) return pays;
  }
  return one ?? 0;
}

export function payOf(pays: UnitPays, unitId: string): number {
  return typeof pays === "number" ? pays : (pays.get(unitId) ?? 0);
}

export interface JobMeta {
  /** The job in the database; the scheduler's job id differs for a round of an iterative job. */
  jobId: string;
  /** The round (from 1) of an iterative job; 0 for a one-shot job. */
  round: number;
  spec: JobSpec;
  ownerId: string;
  kernel: string;
  output: ZodType | undefined;
  /** A program job's own bound on one unit's output, in bytes (submit.ts, outputLimitBytes); absent for jobs from before it. */
  outputLimit?: number;
  /** Millicredits paid per valid result (payOf). */
  pays: UnitPays;
  /** Valid results paid per unit (more agreeing results than this are not paid). */
  quorum: number;
  leaseMs: number;
  throughput: Throughput;
  /** Cluster mode: the slice (server/cluster/slices.ts) this scheduler job is, if it is one, at the epoch this node claimed it. */
  slice?: SliceFence;
  /**
   * A round of an iterative program started here: its validated outputs by unit index, so its
   * step needs neither their commit nor a read (rounds.ts, stepRoundInMemory).
   */
  outputs?: Map<number, unknown>;
}

/**
 * What every part of the coordinator shares: the scheduler, the jobs it runs and the
 * volunteers online. The Coordinator makes one and hands it to each part.
 */
export interface Live {
  readonly scheduler: Scheduler;
  /**
   * By scheduler job id (each round of an iterative job is a scheduler job of its own), with
   * the blobs they read: a job deleted here takes its blobs with it.
   */
  readonly jobs: JobsWithBlobs;
  /** Sockets after their hello, by scheduler key. */
  readonly conns: Map<string, VolunteerConn>;
  readonly observer: CoordinatorObserver;
  /** Injected for tests; the core scheduler never reads a clock itself. */
  now(): number;
  log(msg: string): void;
  /** The Coordinator's events (see there). */
  emit(event: "job", jobId: string): void;
  emit(event: "volunteers"): void;
  /** Shutting down: the commit queue is closing, so nothing new starts. */
  closed: boolean;
}
