import type { Redis } from "ioredis";
import { RateLimiter } from "../services/calc/rateLimit";

/** Token buckets per caller (`burst` at once, refilled at `perSecond`), one budget however many nodes. */
export interface SharedLimiter {
  take(caller: string): Promise<boolean>;
}

export function localLimiter(perSecond: number, burst: number): SharedLimiter {
  const l = new RateLimiter(perSecond, burst);
  return { take: async (caller) => l.take(caller) };
}

// One atomic step per take: refill by the time since the last one, then take a token if there
// is one. Time is Redis's own (TIME), so nodes with skewed clocks share one budget fairly.
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + (now - at) / 1000 * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1 ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return ok`;

/**
 * The bucket in Redis. If Redis cannot answer, the node falls back to a bucket of its own
 * rather than refusing everyone (or letting everything through).
 */
export function redisLimiter(redis: Redis, prefix: string, name: string, perSecond: number, burst: number, log: (m: string) => void): SharedLimiter {
  const fallback = new RateLimiter(perSecond, burst);
  let warned = false;
  return {
    async take(caller) {
      try {
        const ok = (await redis.eval(TAKE, 1, `${prefix}rate:${name}:${caller}`, perSecond, burst)) as number;
        warned = false;
        return ok === 1;
      } catch (e) {
        if (!warned) log(`[cluster] rate limit ${name} falls back to this node's own: ${(e as Error).message}`);
        warned = true;
        return fallback.take(caller);
      }
    },
  };
}
