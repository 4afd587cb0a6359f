import type { Coordinator } from "../coordinator/coordinator";
import type { Cluster } from "./cluster";
import type { NodeSnapshot } from "./presence";
import { NodeRpc } from "./rpc";
import { calcOnVolunteer } from "../services/calc/calc";
import { InteractiveError, type InteractiveErrorCode, type InteractiveOutcome } from "../coordinator/interactive";

/** Longer than the asked node's own tries (two volunteers, 3 s each). */
const FORWARD_TIMEOUT_MS = 8000;

/** How often, at most, one job's changes are announced to the other nodes. */
const JOB_NEWS_MS = 250;

/**
 * Connects this node's coordinator to the other nodes: job changes (coalesced, so a page on
 * any node follows a job computed anywhere), cancels, bans and lifted bans, revoked API keys. The node that
 * takes an action applies it itself and publishes it; the others apply what they hear.
 * Returns the presence snapshot of this node and a stop function.
 */
export function shareWithCluster(cluster: Cluster, coordinator: Coordinator, opts: { url: () => string; log: (m: string) => void }) {
  const startedAt = Date.now();
  const snapshot = (): NodeSnapshot => ({
    id: cluster.nodeId, url: opts.url(), startedAt, at: Date.now(),
    status: coordinator.status(),
    volunteers: coordinator.volunteers().map(({ key: _key, ...v }) => ({ ...v, agent: v.agent ?? "unknown" })),
  });
  const presence = cluster.presence(snapshot);
  if (cluster.mode === "single") return { presence, elsewhere: undefined, stop: async () => presence.close() };

  // Interactive tasks: a node without volunteers hands a calculation to one that has some.
  const rpc = new NodeRpc(cluster.bus, cluster.nodeId);
  rpc.serve("calc", async (input) => {
    const expression = (input as { expression?: unknown } | null)?.expression;
    if (typeof expression !== "string") throw new InteractiveError("evaluation", "a calculation needs an expression");
    return calcOnVolunteer(coordinator, expression);
  });
  const elsewhere = {
    async calc(input: { expression: string }): Promise<InteractiveOutcome> {
      const others = (await presence.nodes()).filter((n) => n.id !== cluster.nodeId && n.volunteers.length > 0);
      if (!others.length) throw new InteractiveError("no-volunteers", "no volunteers are connected to any node to compute this; try again when one joins");
      // The node with the most threads online.
      const node = others.reduce((best, n) => (threads(n) > threads(best) ? n : best));
      try {
        return (await rpc.call(node.id, "calc", input, FORWARD_TIMEOUT_MS)) as InteractiveOutcome;
      } catch (e) {
        const code = (e as { code?: string }).code;
        throw new InteractiveError((["no-volunteers", "timeout", "evaluation", "closed"].includes(code ?? "") ? code : "timeout") as InteractiveErrorCode, (e as Error).message);
      }
    },
  };

  const news = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  // Set while a change heard from another node is re-emitted here, so it is not sent back.
  let relaying = false;
  const onJob = (jobId: string) => {
    if (relaying) return;
    news.add(jobId);
    timer ??= setTimeout(() => {
      timer = undefined;
      cluster.bus.publish("jobs", [...news]);
      news.clear();
    }, JOB_NEWS_MS);
  };
  coordinator.on("job", onJob);
  const onWork = (jobId: string) => cluster.bus.publish("work", jobId);
  coordinator.on("work", onWork);
  const offs = [
    // New work somewhere: claim some if this node's volunteers are hungry.
    cluster.bus.subscribe("work", () => coordinator.wakeSlices()),
    cluster.bus.subscribe("jobs", (ids) => {
      if (!Array.isArray(ids)) return;
      relaying = true;
      try {
        for (const id of ids) if (typeof id === "string") coordinator.emit("job", id);
      } finally {
        relaying = false;
      }
    }),
    // Cancelled on another node (which wrote the end): this node's slices of it stop.
    cluster.bus.subscribe("cancel", (jobId) => {
      if (typeof jobId === "string") coordinator.dropJob(jobId);
    }),
    // The owner's changes to a running job, made on another node, for the slices held here.
    cluster.bus.subscribe("accept-unconfirmed", (jobId) => {
      if (typeof jobId === "string") coordinator.acceptUnconfirmed(jobId);
    }),
    cluster.bus.subscribe("set-replication", (m) => {
      const r = m as { jobId?: unknown; replicas?: unknown; quorum?: unknown };
      if (typeof r.jobId !== "string" || !Number.isInteger(r.replicas) || !Number.isInteger(r.quorum)) return;
      coordinator.setReplication(r.jobId, r.replicas as number, r.quorum as number).catch((e: Error) => opts.log(`[cluster] replication of ${r.jobId}: ${e.message}`));
    }),
    cluster.bus.subscribe("ban", (m) => {
      const b = m as { id?: unknown; until?: unknown; reason?: unknown };
      if (typeof b.id !== "string" || typeof b.until !== "string" || typeof b.reason !== "string") return;
      coordinator.ban(b.id, new Date(b.until), b.reason).catch((e: Error) => opts.log(`[cluster] ban of ${b.id} failed: ${e.message}`));
    }),
    cluster.bus.subscribe("revoke-key", (id) => {
      if (typeof id === "string") coordinator.revokeKey(id);
    }),
    cluster.bus.subscribe("unban", (id) => {
      if (typeof id === "string") coordinator.unban(id).catch((e: Error) => opts.log(`[cluster] unban of ${id} failed: ${e.message}`));
    }),
  ];
  return {
    presence,
    elsewhere,
    async stop() {
      rpc.close();
      coordinator.off("job", onJob);
      coordinator.off("work", onWork);
      clearTimeout(timer);
      for (const off of offs) off();
      await presence.close();
    },
  };
}

const threads = (n: NodeSnapshot) => n.volunteers.reduce((s, v) => s + v.threads, 0);
