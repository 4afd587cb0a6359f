import type pg from "pg";
import { prepared } from "./prepared";
import type { PersistOp, SliceFence } from "../../services/jobs/batchSql";

/**
 * Cluster mode: the batch's ops of slices this node still holds, at the epoch it loaded them.
 * A node that stalled past its slice lease (a long GC, a paused VM, a slow database) may still
 * hold results for a slice that another node has claimed since and rebuilt from the durable
 * rows; written now, they would be invisible to the new holder (a unit computed twice by one
 * host, results that stay pending forever). They are dropped instead: the new holder computes
 * those units again.
 *
 * The slices' rows stay locked FOR KEY SHARE until the batch commits: a claim (FOR UPDATE SKIP
 * LOCKED) passes over a slice while a batch writes into it, so it rebuilds the slice from
 * every result written under the old epoch. Renewals and `done` take weaker locks and do not wait.
 */
export async function fenceOps(c: pg.ClientBase, ops: PersistOp[]): Promise<{ ops: PersistOp[]; dropped: number }> {
  const fences = new Map<string, SliceFence>();
  for (const op of ops) {
    const f = fenceOf(op);
    if (f) fences.set(key(f), f);
  }
  if (!fences.size) return { ops, dropped: 0 };
  const list = [...fences.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.epoch - b.epoch));
  const { rows } = await c.query<{ id: string; epoch: number; owner: string }>(prepared(`SELECT s."id", s."epoch", s."owner" FROM "Slice" s
      JOIN unnest($1::text[], $2::int4[], $3::text[]) AS v(id, epoch, node) ON s."id" = v.id AND s."epoch" = v.epoch AND s."owner" = v.node
      ORDER BY s."id" FOR KEY SHARE OF s`,
  [list.map((f) => f.id), list.map((f) => f.epoch), list.map((f) => f.node)]));
  if (rows.length === fences.size) return { ops, dropped: 0 };
  const held = new Set(rows.map((r) => key({ id: r.id, epoch: r.epoch, node: r.owner })));
  const kept = ops.filter((op) => {
    const f = fenceOf(op);
    return !f || held.has(key(f));
  });
  return { ops: kept, dropped: ops.length - kept.length };
}

/** The slice a result, error or verdict was made in, if it was (cluster mode). */
const fenceOf = (op: PersistOp): SliceFence | undefined =>
  op.type === "result" || op.type === "error" || op.type === "validated" ? op.slice : undefined;

const key = (f: SliceFence) => `${f.id}\u0000${f.epoch}\u0000${f.node}`;
