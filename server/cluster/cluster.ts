import crypto from "node:crypto";
import os from "node:os";
import type { Redis } from "ioredis";
import { loneBus, RedisBus, type ClusterBus } from "./bus";
import { localLimiter, redisLimiter, type SharedLimiter } from "./limiter";
import { loneLeader, RedisLeaderLock, type LeaderLock } from "./leader";
import { lonePresence, RedisPresence, type NodeSnapshot, type Presence } from "./presence";
import { connectRedis } from "./redis";

/**
 * What the nodes of one cluster share that is fleeting (Redis): messages, rate budgets, a
 * leader per duty, presence. Without REDIS_URL the node is alone and each part is the local
 * one, with the same interface; everything durable is in the database either way.
 */
export interface Cluster {
  readonly nodeId: string;
  /** "cluster" with Redis, "single" without. */
  readonly mode: "single" | "cluster";
  readonly bus: ClusterBus;
  limiter(name: string, perSecond: number, burst: number): SharedLimiter;
  leader(name: string): LeaderLock;
  presence(snapshot: () => NodeSnapshot): Presence;
  /** "ok", the error Redis gives, or null without Redis. */
  redisHealth(): Promise<string | null>;
  close(): Promise<void>;
}

/** A node id unique in the cluster: NODE_ID if given, else the host, the process and a random part. */
export function makeNodeId(given?: string): string {
  if (given) return given;
  return `${os.hostname().split(".")[0]}-${process.pid}-${crypto.randomBytes(2).toString("hex")}`;
}

/**
 * `prefix` starts every Redis key and channel of this cluster, so several clusters (or test
 * runs) may share one Redis.
 */
export function startCluster(opts: { redisUrl?: string; nodeId?: string; prefix?: string; log: (m: string) => void; leaderTtlMs?: number; presenceEveryMs?: number }): Cluster {
  const prefix = opts.prefix ?? "tabgrid:";
  const nodeId = makeNodeId(opts.nodeId);
  if (!opts.redisUrl) {
    return {
      nodeId, mode: "single", bus: loneBus,
      limiter: (_name, perSecond, burst) => localLimiter(perSecond, burst),
      leader: () => loneLeader(),
      presence: (snapshot) => lonePresence(snapshot),
      redisHealth: async () => null,
      close: async () => {},
    };
  }
  const redis = connectRedis(opts.redisUrl, opts.log, `tabgrid-${nodeId}`);
  // A connection in subscriber mode can do nothing else.
  const sub = redis.duplicate({ connectionName: `tabgrid-${nodeId}-sub` });
  sub.on("error", () => undefined);
  const bus = new RedisBus(redis, sub, nodeId, prefix, opts.log);
  const owned: Array<{ close(): Promise<void> }> = [bus];
  return {
    nodeId, mode: "cluster", bus,
    limiter: (name, perSecond, burst) => redisLimiter(redis, prefix, name, perSecond, burst, opts.log),
    leader: (name) => remember(owned, new RedisLeaderLock(redis, prefix, name, nodeId, opts.leaderTtlMs)),
    presence: (snapshot) => remember(owned, new RedisPresence(redis, prefix, snapshot, opts.presenceEveryMs, (opts.presenceEveryMs ?? 2000) * 5)),
    redisHealth: () => ping(redis),
    async close() {
      for (const o of owned.reverse()) await o.close().catch(() => undefined);
      sub.disconnect();
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

function remember<T extends { close(): Promise<void> }>(list: Array<{ close(): Promise<void> }>, item: T): T {
  list.push(item);
  return item;
}

async function ping(redis: Redis): Promise<string> {
  try {
    const pong = await Promise.race([redis.ping(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no answer in 2 s")), 2000).unref())]);
    return pong === "PONG" ? "ok" : String(pong);
  } catch (e) {
    return (e as Error).message;
  }
}
