import type { Redis } from "ioredis";

/** What one node says about itself, refreshed every few seconds. */
export interface NodeSnapshot {
  id: string;
  url: string;
  startedAt: number;
  /** When this snapshot was taken (the node's clock). */
  at: number;
  status: Record<string, number>;
  volunteers: Array<{ volunteerId: string; userId: string | null; agent: string; threads: number; connectedAt: number; tasksDone: number; earned: number; held: number }>;
}

/**
 * The nodes of the cluster and their volunteers, each node's entry living only as long as the
 * node keeps refreshing it (a time to live), so a dead node drops out by itself.
 */
export interface Presence {
  nodes(): Promise<NodeSnapshot[]>;
  close(): Promise<void>;
}

export function lonePresence(snapshot: () => NodeSnapshot): Presence {
  return { nodes: async () => [snapshot()], close: async () => {} };
}

export class RedisPresence implements Presence {
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly redis: Redis, private readonly prefix: string, private readonly snapshot: () => NodeSnapshot, everyMs = 2000, private readonly ttlMs = 10_000) {
    this.timer = setInterval(() => void this.refresh(), everyMs);
    this.timer.unref();
    void this.refresh();
  }

  private key(id: string) {
    return `${this.prefix}node:${id}`;
  }

  private async refresh() {
    const s = this.snapshot();
    await this.redis.set(this.key(s.id), JSON.stringify(s), "PX", this.ttlMs).catch(() => undefined);
  }

  async nodes(): Promise<NodeSnapshot[]> {
    const self = this.snapshot();
    try {
      return await this.read(self);
    } catch {
      // Redis away: this node still knows itself.
      return [self];
    }
  }

  private async read(self: NodeSnapshot): Promise<NodeSnapshot[]> {
    const keys: string[] = [];
    let cursor = "0";
    do {
      const [next, batch] = await this.redis.scan(cursor, "MATCH", `${this.prefix}node:*`, "COUNT", 200);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== "0");
    const others = keys.length ? await this.redis.mget(...keys) : [];
    const out = new Map<string, NodeSnapshot>([[self.id, self]]);
    for (const raw of others) {
      if (!raw) continue;
      try {
        const s = JSON.parse(raw) as NodeSnapshot;
        if (!out.has(s.id)) out.set(s.id, s);
      } catch {}
    }
    return [...out.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  async close() {
    clearInterval(this.timer);
    await this.redis.del(this.key(this.snapshot().id)).catch(() => undefined);
  }
}
