/**
 * The server's alerting loop: every dashboard sample goes through the engine; every
 * transition and reminder becomes an AlertEvent row; those meant to be notified go to every
 * enabled NotificationChannel and to the admins' in-app list.
 *
 * - Samples are handled one at a time in order (a promise chain); the engine step itself is
 *   a few comparisons per rule. If the database falls behind, extra samples are dropped
 *   rather than queued without bound.
 * - Deliveries are fire-and-forget: a slow or broken webhook never delays the next sample,
 *   and a failure is logged, never thrown.
 * - Rate limits: the engine gives one event per state change and reminders per repeatMinutes;
 *   on top, each channel (in-app counts as one) takes at most ALERT_NOTIFY_PER_MINUTE
 *   notifications in any 60 s, across all rules, so a storm of flapping rules can't flood
 *   it. Dropped notifications are logged; their events are still in the history.
 * - Channels are read from the database for each delivery, with the last list that loaded
 *   kept as a fallback: a "Database errors" alert must still go out while the database fails.
 * - In-app notifications are made for firing and resolved, not for reminders: the unread
 *   "Firing" entry already says it, and hourly copies would bury everything else.
 * - A rule deleted or disabled while firing is dropped without a "resolved".
 * - Firing alerts survive a restart: a rule whose last recorded event is "firing" or
 *   "repeat" starts out firing, so it is not notified again and its "resolved" still goes out.
 *
 * Wiring (server/app.ts), after the sampler has started:
 *   const alerting = env.TABGRID_ALERTS === "on" ? startAlerting(deps, monitoring.sampler, { log }) : undefined;
 * and in close(), before the database is disconnected: `await alerting?.stop()`.
 */
import type { AppDeps } from "../../services/deps";
import type { Sample } from "../series";
import { AlertEngine, type AlertTransition, type RuleStatus } from "./engine";
import { ruleSpec, seedDefaultRules } from "./rules";
import { registerManager, unregisterManager } from "./registry";
import { notify, describeTarget, type AlertNotice, type ChannelTarget } from "../notify";
import { serverNotifyContext } from "./context";
import { parseChannelConfig } from "../notify/channels";

/** Anything with the sampler's `on("sample", …)`: an EventEmitter, or the sampler itself. */
export interface SampleSource {
  on(event: "sample", listener: (s: Sample) => void): unknown;
  off?(event: "sample", listener: (s: Sample) => void): unknown;
  removeListener?(event: "sample", listener: (s: Sample) => void): unknown;
}

export interface AlertingOptions {
  log?: (message: string) => void;
  /** Overrides ALERT_NOTIFY_PER_MINUTE. */
  maxPerMinute?: number;
  /** Per delivery (webhook request, SMTP timeouts); default 10 s. */
  notifyTimeoutMs?: number;
  /** The `instance` label and the name in messages; default PUBLIC_URL's host, else the host name. */
  instance?: string;
  /** Seed the default rules into an empty table (default true). */
  seed?: boolean;
}

export interface AlertManager {
  /** Settles once rules are loaded (samples that arrive earlier wait for it). */
  readonly ready: Promise<void>;
  /** Re-reads the rules (the alerts services call this after every change). */
  reload(): Promise<void>;
  /** Each enabled rule's live state, by rule id. */
  states(): Map<string, RuleStatus>;
  /** Settles when every sample received so far is handled and every delivery has finished. */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

/** Sliding 60-second window per key. */
class RateLimiter {
  private sent = new Map<string, number[]>();
  constructor(private perMinute: number) {}
  take(key: string, now: number): boolean {
    const recent = (this.sent.get(key) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= this.perMinute) {
      this.sent.set(key, recent);
      return false;
    }
    recent.push(now);
    this.sent.set(key, recent);
    return true;
  }
}

const MAX_QUEUED_SAMPLES = 20;

interface LoadedChannel {
  id: string;
  target: ChannelTarget;
}

export function startAlerting(deps: AppDeps, source: SampleSource, opts: AlertingOptions = {}): AlertManager {
  const log = opts.log ?? ((m: string) => console.error(m));
  const { db, env } = deps;
  const engine = new AlertEngine();
  const limiter = new RateLimiter(opts.maxPerMinute ?? env.ALERT_NOTIFY_PER_MINUTE);
  const inflight = new Set<Promise<void>>();
  let chain: Promise<void> = Promise.resolve();
  let queued = 0;
  let stopped = false;
  let lastChannels: LoadedChannel[] = [];

  const ctx = serverNotifyContext(deps, { instance: opts.instance, timeoutMs: opts.notifyTimeoutMs });

  const enqueue = (step: () => Promise<void>): Promise<void> => {
    const p = chain.then(step).catch((e: Error) => log(`[alerts] ${e.message}`));
    chain = p;
    return p;
  };

  // Until the rules have loaded once (the database may be busy at start), every sample retries.
  let loaded = false;
  async function loadRules(first: boolean) {
    if (first && opts.seed !== false) {
      const n = await seedDefaultRules(db);
      if (n) log(`[alerts] created ${n} default alert rules`);
    }
    const rows = await db.alertRule.findMany({
      where: { enabled: true },
      select: {
        id: true, name: true, metric: true, comparison: true, threshold: true, hysteresis: true, forSeconds: true,
        repeatMinutes: true, severity: true, silencedUntil: true, description: true,
      },
      orderBy: [{ createdAt: "asc" }, { id: "asc" }],
    });
    const added = engine.setRules(rows.map(ruleSpec));
    for (const id of added) await restore(id);
    loaded = true;
  }

  async function restore(ruleId: string) {
    const last = await db.alertEvent.findFirst({
      where: { ruleId, state: { in: ["firing", "repeat", "resolved"] } },
      orderBy: { id: "desc" },
      select: { state: true, at: true },
    });
    if (!last || last.state === "resolved") return;
    const fired = await db.alertEvent.findFirst({ where: { ruleId, state: "firing" }, orderBy: { id: "desc" }, select: { at: true } });
    engine.machine(ruleId)?.restoreFiring((fired ?? last).at.getTime(), last.at.getTime());
  }

  async function loadChannels(): Promise<LoadedChannel[]> {
    try {
      const rows = await db.notificationChannel.findMany({ where: { enabled: true }, select: { id: true, name: true, kind: true, config: true } });
      const channels: LoadedChannel[] = [];
      for (const r of rows) {
        const target = parseChannelConfig(r);
        if (target) channels.push({ id: r.id, target });
        else log(`[alerts] channel "${r.name}" (${r.id}) has an unreadable configuration; skipped`);
      }
      lastChannels = channels;
    } catch (e) {
      log(`[alerts] could not load notification channels (${(e as Error).message}); using the last known ${lastChannels.length}`);
    }
    return lastChannels;
  }

  function deliver(key: string, target: ChannelTarget, notice: AlertNotice) {
    if (!limiter.take(key, Date.now())) {
      log(`[alerts] rate limit: not sending "${notice.name}" (${notice.state}) to ${describeTarget(target)}`);
      return;
    }
    const p = notify(target, notice, ctx)
      .catch((e: Error) => log(`[alerts] ${describeTarget(target)} failed for "${notice.name}" (${notice.state}): ${e.message}`))
      .finally(() => inflight.delete(p));
    inflight.add(p);
  }

  function dispatch(t: AlertTransition) {
    const notice = toNotice(t);
    const p = loadChannels()
      .then((channels) => {
        for (const c of channels) deliver(`channel:${c.id}`, c.target, notice);
        if (t.state !== "repeat") deliver("inapp", { kind: "inapp" }, notice);
      })
      .catch((e: Error) => log(`[alerts] dispatch failed: ${e.message}`))
      .finally(() => inflight.delete(p));
    inflight.add(p);
  }

  async function handle(sample: Sample) {
    if (!loaded) await loadRules(true);
    const transitions = engine.evaluate(sample);
    if (transitions.length === 0) return;
    // Deliveries first: when the database is what broke, the notification still leaves.
    for (const t of transitions) if (t.notify) dispatch(t);
    for (const t of transitions) log(`[alerts] ${t.rule.name}: ${t.state}${t.notify ? "" : " (not notified)"}: ${t.message}`);
    try {
      await db.alertEvent.createMany({
        data: transitions.map((t) => ({ ruleId: t.rule.id, name: t.rule.name, state: t.state, value: t.value, message: t.message, at: new Date(t.at) })),
      });
    } catch (e) {
      log(`[alerts] could not record ${transitions.length} alert event(s): ${(e as Error).message}`);
    }
  }

  const onSample = (sample: Sample) => {
    if (stopped) return;
    if (queued >= MAX_QUEUED_SAMPLES) {
      log(`[alerts] falling behind: dropped the sample of ${new Date(sample.at).toISOString()}`);
      return;
    }
    queued++;
    void enqueue(() => handle(sample)).finally(() => queued--);
  };

  const ready = enqueue(() => loadRules(true));
  source.on("sample", onSample);

  const manager: AlertManager = {
    ready,
    reload: () => enqueue(() => loadRules(false)),
    states() {
      const out = new Map<string, RuleStatus>();
      for (const r of engine.rules()) out.set(r.id, engine.machine(r.id)!.status());
      return out;
    },
    async idle() {
      for (;;) {
        const c = chain;
        await c;
        await Promise.allSettled([...inflight]);
        if (c === chain && inflight.size === 0) return;
      }
    },
    async stop() {
      stopped = true;
      if (source.off) source.off("sample", onSample);
      else source.removeListener?.("sample", onSample);
      unregisterManager(db, manager);
      await manager.idle();
    },
  };
  registerManager(db, manager);
  return manager;
}

function toNotice(t: AlertTransition): AlertNotice {
  return {
    name: t.rule.name,
    state: t.state === "pending" ? "firing" : t.state,
    severity: t.rule.severity,
    message: t.message,
    description: t.rule.description || undefined,
    value: t.value,
    at: t.at,
    startsAt: t.startsAt,
  };
}
