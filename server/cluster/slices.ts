import type pg from "pg";
import { prepared } from "../store/postgres/prepared";

// Work partitioning between the nodes of a cluster (PostgreSQL): a job round's units are cut
// into slices, and a node dispatches only the slices it holds. Leases are timed by the
// database's clock, so nodes with skewed clocks agree on who holds what.

/** Units per slice: big enough that claiming costs nothing per unit, small enough to spread a job over nodes. */
export const SLICE_UNITS = 256;

export interface SliceRow {
  id: string;
  jobId: string;
  round: number;
  first: number;
  last: number;
  epoch: number;
}

const NOW = `(now() AT TIME ZONE 'UTC')`;

/** The least a job is cut into per live node, and the smallest slice worth a claim. */
const SLICES_PER_NODE = 2;
const MIN_SLICE_UNITS = 16;

/**
 * Units per slice of a new one-shot job: 256, or fewer when the cluster has several nodes,
 * so that a small job is cut into at least two slices per node and spreads over every node's
 * volunteers (one slice of 250 units is computed by one node's volunteers alone).
 */
export function sliceUnitsFor(units: number, nodes: number): number {
  if (nodes <= 1) return SLICE_UNITS;
  return Math.max(MIN_SLICE_UNITS, Math.min(SLICE_UNITS, Math.ceil(units / (nodes * SLICES_PER_NODE))));
}

/** Nodes that heartbeat lately (every 2 s; a node silent for 10 s is down). */
export async function liveNodes(c: pg.ClientBase): Promise<number> {
  const { rows } = await c.query<{ n: number }>(prepared(`SELECT count(*)::int AS "n" FROM "Node" WHERE "heartbeatAt" > ${NOW} - interval '10 seconds'`, []));
  return rows[0]?.n ?? 0;
}

/** The slices of a round of `units` units, as rows for an INSERT. */
export function slicesOf(jobId: string, round: number, units: number, size = SLICE_UNITS): Array<Omit<SliceRow, "epoch">> {
  const out: Array<Omit<SliceRow, "epoch">> = [];
  for (let first = 0; first < units; first += size) out.push({ id: `${jobId}:${round}:${first}`, jobId, round, first, last: Math.min(units, first + size) });
  return out;
}

export async function insertSlices(c: pg.ClientBase, rows: Array<Omit<SliceRow, "epoch">>) {
  if (!rows.length) return;
  await c.query(prepared(`INSERT INTO "Slice" ("id", "jobId", "round", "first", "last")
    SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::int4[], $5::int4[]) ON CONFLICT ("id") DO NOTHING`,
  [rows.map((r) => r.id), rows.map((r) => r.jobId), rows.map((r) => r.round), rows.map((r) => r.first), rows.map((r) => r.last)]));
}

/**
 * Claims up to `max` slices nobody holds (never claimed, or their lease ran out: their node
 * died or let go), oldest jobs first, but jobs no other node is computing before those another
 * node is: every commit of a node takes its jobs' rows, so nodes on different jobs commit side
 * by side where nodes on one job would queue for its row. SKIP LOCKED: nodes claiming at once
 * take different slices instead of waiting on each other. Each claim bumps the slice's epoch.
 */
export async function claimSlices(pool: pg.Pool, nodeId: string, max: number, leaseMs: number): Promise<SliceRow[]> {
  // The first `max` jobs with a slice to claim, in that order, then their slices: sorting
  // every claimable slice of every running job cost 2-3 ms a claim once a few hundred queued.
  const { rows } = await pool.query<SliceRow>(prepared(`WITH c AS (
      SELECT s."id" FROM "Slice" s JOIN (
          SELECT j."id", j."createdAt",
            j."id" IN (SELECT o."jobId" FROM "Slice" o WHERE o."owner" <> $1 AND NOT o."done" AND o."leaseUntil" >= ${NOW}) AS "elsewhere"
          FROM "Job" j WHERE j."state" = 'running'
            AND EXISTS (SELECT 1 FROM "Slice" f WHERE f."jobId" = j."id" AND NOT f."done" AND (f."leaseUntil" IS NULL OR f."leaseUntil" < ${NOW}))
          ORDER BY 3, 2, 1 LIMIT $2) j ON s."jobId" = j."id"
      WHERE NOT s."done" AND (s."leaseUntil" IS NULL OR s."leaseUntil" < ${NOW})
      ORDER BY j."elsewhere", j."createdAt", j."id", s."round", s."first" LIMIT $2 FOR UPDATE OF s SKIP LOCKED)
    UPDATE "Slice" s SET "owner" = $1, "leaseUntil" = ${NOW} + $3 * interval '1 millisecond', "epoch" = s."epoch" + 1
    FROM c WHERE s."id" = c."id" RETURNING s."id", s."jobId", s."round", s."first", s."last", s."epoch"`, [nodeId, max, leaseMs]));
  return rows;
}

/** Renews this node's leases on `ids`; returns the ids it still holds (the others were lost). */
export async function renewSlices(pool: pg.Pool, nodeId: string, ids: string[], leaseMs: number): Promise<Set<string>> {
  if (!ids.length) return new Set();
  // Only slices of running jobs: a job that ended on another node (failed, cancelled) is dropped here too.
  const { rows } = await pool.query<{ id: string }>(prepared(`UPDATE "Slice" SET "leaseUntil" = ${NOW} + $3 * interval '1 millisecond'
    WHERE "owner" = $1 AND "id" = ANY($2::text[]) AND NOT "done"
      AND "jobId" IN (SELECT "id" FROM "Job" WHERE "state" = 'running') RETURNING "id"`, [nodeId, ids, leaseMs]));
  return new Set(rows.map((r) => r.id));
}

/** A slice whose units are all decided: nobody needs to claim it again. */
export async function sliceDone(pool: pg.Pool, nodeId: string, id: string, epoch: number) {
  await pool.query(prepared(`UPDATE "Slice" SET "done" = true, "leaseUntil" = NULL WHERE "id" = $1 AND "owner" = $2 AND "epoch" = $3`, [id, nodeId, epoch]));
}

/** Gives one slice back at once (this node could not load it). */
export async function releaseSlice(pool: pg.Pool, nodeId: string, id: string) {
  await pool.query(prepared(`UPDATE "Slice" SET "leaseUntil" = NULL, "owner" = NULL WHERE "id" = $1 AND "owner" = $2 AND NOT "done"`, [id, nodeId]));
}

/** Gives slices back at once (a node shutting down), so others need not wait for the lease. */
export async function releaseSlices(pool: pg.Pool, nodeId: string) {
  await pool.query(prepared(`UPDATE "Slice" SET "leaseUntil" = NULL, "owner" = NULL WHERE "owner" = $1 AND NOT "done"`, [nodeId]));
}

/** This node is alive; returns nothing. The admin page lists nodes by their heartbeat. */
export async function heartbeat(pool: pg.Pool, nodeId: string, url: string) {
  await pool.query(prepared(`INSERT INTO "Node" ("id", "url", "startedAt", "heartbeatAt") VALUES ($1, $2, ${NOW}, ${NOW})
    ON CONFLICT ("id") DO UPDATE SET "url" = excluded."url", "heartbeatAt" = excluded."heartbeatAt"`, [nodeId, url]));
}

/** A slice this node made and holds from the start (an iterative job's next round). */
export async function startedSlice(pool: pg.Pool, nodeId: string, s: Omit<SliceRow, "epoch">, leaseMs: number): Promise<SliceRow> {
  const { rows } = await pool.query<SliceRow>(prepared(`INSERT INTO "Slice" ("id", "jobId", "round", "first", "last", "owner", "leaseUntil", "epoch")
    VALUES ($1, $2, $3, $4, $5, $6, ${NOW} + $7 * interval '1 millisecond', 1)
    ON CONFLICT ("id") DO UPDATE SET "owner" = excluded."owner", "leaseUntil" = excluded."leaseUntil", "epoch" = "Slice"."epoch" + 1
    RETURNING "id", "jobId", "round", "first", "last", "epoch"`, [s.id, s.jobId, s.round, s.first, s.last, nodeId, leaseMs]));
  return rows[0];
}

/**
 * After a backtrack reopened units of these jobs: every slice of a running one-shot job with a
 * unit not done is claimable again, and taken from its holder (whose view of it is stale).
 */
export async function reopenSlices(pool: pg.Pool, jobIds: string[]) {
  if (!jobIds.length) return;
  await pool.query(prepared(`UPDATE "Slice" s SET "done" = false, "owner" = NULL, "leaseUntil" = NULL
    WHERE s."jobId" = ANY($1::text[]) AND s."round" = 0 AND EXISTS (
      SELECT 1 FROM "WorkUnit" u WHERE u."jobId" = s."jobId" AND u."round" = 0 AND u."idx" >= s."first" AND u."idx" < s."last" AND NOT u."done")`, [jobIds]));
}
