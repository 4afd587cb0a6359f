import { createRequire } from "node:module";
import type { Redis } from "ioredis";

/** ioredis, loaded by the first connection: a single node never needs its ~25 MB. */
const load = () => createRequire(import.meta.url)("ioredis") as typeof import("ioredis");

/**
 * A Redis connection that reconnects by itself with jittered back-off (so a fleet of nodes
 * does not knock on a restarted Redis all at once) and fails commands fast while it is down
 * instead of queueing them without end: what goes through Redis is shared and fleeting, and
 * a node keeps serving its own volunteers when Redis is away.
 */
export function connectRedis(url: string, log: (m: string) => void, name: string): Redis {
  const redis = new (load().Redis)(url, {
    connectionName: name,
    maxRetriesPerRequest: 2,
    enableOfflineQueue: true,
    retryStrategy: (times) => Math.min(5000, 100 * 2 ** Math.min(times, 6)) * (0.5 + Math.random() / 2),
    lazyConnect: false,
  });
  let down = false;
  redis.on("error", (e: Error) => {
    if (!down) log(`[cluster] Redis ${name}: ${e.message}`);
    down = true;
  });
  redis.on("ready", () => {
    if (down) log(`[cluster] Redis ${name}: connected again`);
    down = false;
  });
  return redis;
}
