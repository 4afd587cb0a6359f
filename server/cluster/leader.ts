import type { Redis } from "ioredis";

/**
 * One node at a time does a cluster-wide duty (evaluating alert rules, so an incident is
 * notified once): whoever holds the lock, renewed well within its time to live. A node that
 * dies loses it after `ttlMs`, and another takes over.
 */
export interface LeaderLock {
  readonly leader: boolean;
  /** Called with true when this node becomes the leader, false when it stops being it. */
  onChange(cb: (leader: boolean) => void): void;
  close(): Promise<void>;
}

/** One node alone leads. */
export function loneLeader(): LeaderLock {
  return { leader: true, onChange: (cb) => cb(true), close: async () => {} };
}

// Renews the lock if this node holds it, takes it if nobody does; returns 1 if held after.
const HOLD = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export class RedisLeaderLock implements LeaderLock {
  private held = false;
  private readonly listeners: Array<(leader: boolean) => void> = [];
  private readonly timer: NodeJS.Timeout;
  private readonly key: string;

  constructor(private readonly redis: Redis, prefix: string, name: string, private readonly nodeId: string, private readonly ttlMs = 10_000) {
    this.key = `${prefix}leader:${name}`;
    this.timer = setInterval(() => void this.tick(), Math.max(100, Math.floor(ttlMs / 3)));
    this.timer.unref();
    void this.tick();
  }

  get leader() {
    return this.held;
  }

  onChange(cb: (leader: boolean) => void) {
    this.listeners.push(cb);
    if (this.held) cb(true);
  }

  private async tick() {
    let now: boolean;
    try {
      now = (await this.redis.eval(HOLD, 1, this.key, this.nodeId, this.ttlMs)) === 1;
    } catch {
      // Redis away: this node can no longer know it is alone, so it steps down.
      now = false;
    }
    if (now === this.held) return;
    this.held = now;
    for (const cb of this.listeners) cb(now);
  }

  async close() {
    clearInterval(this.timer);
    if (this.held) {
      this.held = false;
      for (const cb of this.listeners) cb(false);
      await this.redis.eval(RELEASE, 1, this.key, this.nodeId).catch(() => undefined);
    }
  }
}
