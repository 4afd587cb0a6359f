import type pg from "pg";
import { prepared } from "./prepared";

// What loading a slice reads (coordinator/jobLifecycle.ts), in plain SQL on the pool: a node
// claims a slice every quarter second or so under load, and Prisma's query planning took a
// tenth of a node's CPU doing the same reads. The shapes are those of the Prisma queries used
// on SQLite, so the loader does not care which engine answered.

export interface JobRowPg {
  id: string; ownerId: string; kernel: string; params: string; leaseMs: number; replicas: number; quorum: number;
  maxReplicas: number; adaptive: boolean; tolerance: string | null; state: string; unitsDone: number; chunks: number;
}

export interface UnitRowPg { id: string; idx: number; input: string; work: number; pay: number; done: boolean }

export interface PendingRowPg { id: string; unitId: string; volunteerId: string; accountId: string; output: string | null; digest: string | null }

/** A unit range of one round: `first` ≤ idx < `last`, or the whole round. */
export interface UnitRange { first: number; last: number }

export async function readJobPg(pool: pg.Pool, id: string): Promise<JobRowPg | null> {
  const { rows } = await pool.query<JobRowPg>(prepared(`SELECT "id", "ownerId", "kernel", "params", "leaseMs", "replicas", "quorum", "maxReplicas",
    "adaptive", "tolerance", "state", "unitsDone", "chunks" FROM "Job" WHERE "id" = $1`, [id]));
  return rows[0] ?? null;
}

/** The round's units (of the range) by index, and their results still waiting for a quorum, oldest first. */
export async function readUnitsPg(pool: pg.Pool, jobId: string, round: number, range?: UnitRange): Promise<{ units: UnitRowPg[]; pending: PendingRowPg[] }> {
  const from = range?.first ?? 0;
  const to = range?.last ?? 2 ** 31 - 1;
  // Side by side on two connections of the pool.
  const [units, pending] = await Promise.all([
    pool.query<UnitRowPg>(prepared(`SELECT "id", "idx", "input", "work", "pay", "done" FROM "WorkUnit"
      WHERE "jobId" = $1 AND "round" = $2 AND "idx" >= $3 AND "idx" < $4 ORDER BY "idx"`, [jobId, round, from, to])),
    pool.query<PendingRowPg>(prepared(`SELECT r."id", r."unitId", r."volunteerId", r."accountId", r."output", r."digest" FROM "Result" r
      JOIN "WorkUnit" u ON u."id" = r."unitId"
      WHERE r."jobId" = $1 AND r."state" = 'pending' AND u."round" = $2 AND u."idx" >= $3 AND u."idx" < $4 ORDER BY r."receivedAt"`, [jobId, round, from, to])),
  ]);
  return { units: units.rows, pending: pending.rows };
}
