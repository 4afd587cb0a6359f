import type { AppDeps } from "../deps";
import { dbKind, pgPool } from "../../store/prisma";

/** A node that has not heartbeaten for this long is shown as down (it stops renewing its slices too). */
const DOWN_AFTER_MS = 10_000;

export interface NodeView {
  id: string;
  url: string;
  self: boolean;
  /** "up": heard from in Redis and in the database lately; "down" otherwise. */
  health: "up" | "down";
  volunteers: number;
  threads: number;
  tasksPerSecond: number;
  /** Slices of work it holds now (cluster mode). */
  slices: number;
  lastSeenSecondsAgo: number | null;
}

/**
 * The nodes of the cluster for the admin page: each with its volunteers (presence in Redis),
 * the slices it holds and its last heartbeat (PostgreSQL). Alone, the one node.
 */
export async function listNodes(deps: Pick<AppDeps, "db" | "cluster" | "presence">): Promise<{ mode: "single" | "cluster"; nodes: NodeView[] }> {
  const present = await deps.presence.nodes();
  const beats = new Map<string, { url: string; agoMs: number; slices: number }>();
  if (deps.cluster.mode === "cluster" && dbKind(deps.db) === "postgres") {
    const { rows } = await pgPool(deps.db).query<{ id: string; url: string; agoMs: number; slices: number }>(`
      SELECT n."id", n."url", EXTRACT(EPOCH FROM ((now() AT TIME ZONE 'UTC') - n."heartbeatAt")) * 1000 AS "agoMs",
        (SELECT count(*) FROM "Slice" s WHERE s."owner" = n."id" AND NOT s."done" AND s."leaseUntil" > (now() AT TIME ZONE 'UTC'))::int AS "slices"
      FROM "Node" n WHERE n."heartbeatAt" > (now() AT TIME ZONE 'UTC') - interval '1 hour' ORDER BY n."id"`);
    for (const r of rows) beats.set(r.id, { url: r.url, agoMs: Number(r.agoMs), slices: r.slices });
  }
  const ids = [...new Set([...present.map((p) => p.id), ...beats.keys()])].sort();
  const nodes = ids.map((id): NodeView => {
    const p = present.find((n) => n.id === id);
    const b = beats.get(id);
    const alive = !!p && (deps.cluster.mode === "single" || (b !== undefined && b.agoMs < DOWN_AFTER_MS));
    return {
      id, url: p?.url ?? b?.url ?? "", self: id === deps.cluster.nodeId, health: alive ? "up" : "down",
      volunteers: p ? new Set(p.volunteers.map((v) => v.volunteerId)).size : 0,
      threads: p ? p.volunteers.reduce((s, v) => s + v.threads, 0) : 0,
      tasksPerSecond: Number(p?.status.tasksPerSecond ?? 0),
      slices: b?.slices ?? 0,
      lastSeenSecondsAgo: b ? Math.round(b.agoMs / 1000) : p ? 0 : null,
    };
  });
  return { mode: deps.cluster.mode, nodes };
}

/**
 * The public cluster summary (CLI `status`, the volunteer page): this node's, or in a cluster
 * the sum over every node (each as it last told the others, this one as it is now).
 */
export async function clusterStatus(deps: Pick<AppDeps, "db" | "cluster" | "presence" | "coordinator">) {
  const own = deps.coordinator.status();
  if (deps.cluster.mode === "single") return { ...own, nodes: 1 };
  const nodes = await deps.presence.nodes();
  const sum = (k: string) => nodes.reduce((s, n) => s + Number((n.id === deps.cluster.nodeId ? (own as Record<string, number>)[k] : n.status[k]) ?? 0), 0);
  const volunteers = new Set(nodes.flatMap((n) => n.volunteers.map((v) => v.volunteerId)));
  return {
    volunteers: volunteers.size, connections: sum("connections"), threads: sum("threads"), tasksQueued: sum("tasksQueued"), tasksRunning: sum("tasksRunning"),
    // A job's slices may be spread over nodes: the database counts each job once.
    jobsRunning: await deps.db.job.count({ where: { state: "running" } }),
    tasksPerSecond: sum("tasksPerSecond"), pendingCommits: sum("pendingCommits"), nodes: nodes.length,
  };
}
