import type { Redis } from "ioredis";

/**
 * Messages between the nodes of a cluster: a ban, a cancel, "job X changed". A node acts on
 * its own decisions directly and publishes them for the others; `subscribe` hears only the
 * other nodes. Best effort, like Redis pub/sub itself: what must not be lost is in the database.
 */
export interface ClusterBus {
  publish(topic: string, message: unknown): void;
  subscribe(topic: string, handler: (message: unknown, from: string) => void): () => void;
  close(): Promise<void>;
}

/** One node alone: nobody to tell. */
export const loneBus: ClusterBus = {
  publish() {},
  subscribe: () => () => {},
  close: async () => {},
};

export class RedisBus implements ClusterBus {
  private readonly handlers = new Map<string, Set<(message: unknown, from: string) => void>>();

  constructor(private readonly pub: Redis, private readonly sub: Redis, private readonly nodeId: string, private readonly prefix: string, private readonly log: (m: string) => void) {
    sub.on("message", (channel: string, raw: string) => {
      const topic = channel.slice(`${this.prefix}bus:`.length);
      let msg: { from: string; m: unknown };
      try {
        msg = JSON.parse(raw) as { from: string; m: unknown };
      } catch {
        return;
      }
      if (msg.from === this.nodeId) return;
      for (const h of this.handlers.get(topic) ?? []) {
        try {
          h(msg.m, msg.from);
        } catch (e) {
          this.log(`[cluster] handling ${topic} from ${msg.from} failed: ${(e as Error).message}`);
        }
      }
    });
  }

  publish(topic: string, message: unknown) {
    this.pub.publish(`${this.prefix}bus:${topic}`, JSON.stringify({ from: this.nodeId, m: message })).catch((e: Error) => {
      this.log(`[cluster] publishing ${topic} failed: ${e.message}`);
    });
  }

  subscribe(topic: string, handler: (message: unknown, from: string) => void) {
    let set = this.handlers.get(topic);
    if (!set) {
      this.handlers.set(topic, (set = new Set()));
      void this.sub.subscribe(`${this.prefix}bus:${topic}`).catch((e: Error) => this.log(`[cluster] subscribing to ${topic} failed: ${e.message}`));
    }
    set.add(handler);
    return () => set.delete(handler);
  }

  async close() {
    this.handlers.clear();
  }
}
