/**
 * The alert engine: one state machine per rule, fed one value at a time, with time passed in.
 * Pure (no I/O, no clock of its own), so every transition is unit-tested; the manager
 * (manager.ts) feeds it samples and turns its events into database rows and notifications.
 *
 *   inactive ──condition true──▶ pending ──true for ≥ forSeconds──▶ firing ──value back past
 *      ▲                           │          (forSeconds 0: straight to firing)   threshold ∓ hysteresis
 *      └──condition false (silent)─┘                                                   │
 *      └──────────────────────────────── resolved (event) ◀──────────────────────────┘
 *
 * Choices, following Prometheus/Alertmanager where they have one:
 * - "pending" is recorded in the history but never notified (Prometheus doesn't either).
 * - Resolving needs the value at or beyond threshold ∓ hysteresis (">" rules: value ≤
 *   threshold − hysteresis; "<" rules: value ≥ threshold + hysteresis). At hysteresis 0 that is
 *   exactly "the condition is false", so `db_errors > 0` resolves when it reads 0 again.
 * - While firing, a "repeat" reminder goes out when repeatMinutes have passed since the last
 *   notification of this alert (repeatMinutes 0: never).
 * - Silence (silencedUntil > the sample's time): states are tracked and events recorded as
 *   usual, but `notify` is false on all of them and no reminders are produced. A resolve during
 *   silence is recorded, not notified: silence means quiet, and the admin page shows the
 *   history. If an alert fired during a silence and is still firing when the silence ends, a
 *   "repeat" goes out at the first sample after it, so a problem that began during
 *   maintenance is not kept from anyone until the next reminder.
 * - A "resolved" is only notified if its alert was notified at least once, so receivers never
 *   see a resolve for an alert they were not told about.
 * - NaN or missing values change nothing (no transition, no reminder).
 */
import { alertMessage } from "./format";

export type Comparison = ">" | "<";
export type Severity = "warning" | "critical";
export type AlertEventState = "pending" | "firing" | "resolved" | "repeat";
export type Phase = "inactive" | "pending" | "firing";

export interface AlertRuleSpec {
  id: string;
  name: string;
  /** A dashboard series (server/monitoring/series.ts). */
  metric: string;
  comparison: Comparison;
  threshold: number;
  hysteresis: number;
  forSeconds: number;
  repeatMinutes: number;
  severity: Severity;
  /** Milliseconds since the epoch, or null. */
  silencedUntil: number | null;
  description?: string;
}

export interface AlertTransition {
  rule: AlertRuleSpec;
  state: AlertEventState;
  value: number;
  /** The sample's time, ms since the epoch. */
  at: number;
  message: string;
  /** When the alert started firing (for pending: when the condition started to hold). */
  startsAt: number;
  /** Whether to tell anyone: false for "pending" and while silenced; always recorded. */
  notify: boolean;
}

export interface RuleStatus {
  phase: Phase;
  /** When the condition started to hold (pending or firing). */
  since: number | null;
  firedAt: number | null;
  lastValue: number | null;
  lastNotifiedAt: number | null;
}

export function isSilenced(rule: AlertRuleSpec, at: number): boolean {
  return rule.silencedUntil !== null && rule.silencedUntil > at;
}

export class RuleMachine {
  private phase: Phase = "inactive";
  private since: number | null = null;
  private firedAt: number | null = null;
  private lastNotifiedAt: number | null = null;
  private lastValue: number | null = null;

  constructor(public rule: AlertRuleSpec) {}

  status(): RuleStatus {
    return { phase: this.phase, since: this.since, firedAt: this.firedAt, lastValue: this.lastValue, lastNotifiedAt: this.lastNotifiedAt };
  }

  /**
   * Picks up an alert that was firing before a restart (from the event history), so the
   * restart neither re-notifies it nor forgets to send its "resolved".
   */
  restoreFiring(firedAt: number, lastNotifiedAt: number | null) {
    this.phase = "firing";
    this.since = firedAt;
    this.firedAt = firedAt;
    this.lastNotifiedAt = lastNotifiedAt;
  }

  private breached(v: number): boolean {
    return this.rule.comparison === ">" ? v > this.rule.threshold : v < this.rule.threshold;
  }

  private cleared(v: number): boolean {
    const { comparison, threshold, hysteresis } = this.rule;
    return comparison === ">" ? v <= threshold - hysteresis : v >= threshold + hysteresis;
  }

  private event(state: AlertEventState, value: number, at: number, notify: boolean, heldMs: number, startsAt: number): AlertTransition {
    if (notify) this.lastNotifiedAt = at;
    return { rule: this.rule, state, value, at, startsAt, notify, message: alertMessage(this.rule, state, value, heldMs) };
  }

  private fire(value: number, at: number, silenced: boolean): AlertTransition {
    this.phase = "firing";
    this.firedAt = at;
    this.lastNotifiedAt = null;
    return this.event("firing", value, at, !silenced, at - (this.since ?? at), at);
  }

  /** Feeds one value taken at `at` (ms); returns the events it causes (zero or one). */
  feed(value: number | undefined | null, at: number): AlertTransition[] {
    if (typeof value !== "number" || Number.isNaN(value)) return [];
    this.lastValue = value;
    const silenced = isSilenced(this.rule, at);
    switch (this.phase) {
      case "inactive": {
        if (!this.breached(value)) return [];
        this.since = at;
        if (this.rule.forSeconds <= 0) return [this.fire(value, at, silenced)];
        this.phase = "pending";
        return [this.event("pending", value, at, false, 0, at)];
      }
      case "pending": {
        if (!this.breached(value)) {
          this.reset();
          return [];
        }
        if (at - this.since! >= this.rule.forSeconds * 1000) return [this.fire(value, at, silenced)];
        return [];
      }
      case "firing": {
        const firedAt = this.firedAt ?? at;
        if (this.cleared(value)) {
          const notify = !silenced && this.lastNotifiedAt !== null;
          const e = this.event("resolved", value, at, notify, at - firedAt, firedAt);
          this.reset();
          return [e];
        }
        if (silenced) return [];
        const repeatMs = this.rule.repeatMinutes * 60_000;
        const due = this.lastNotifiedAt === null || (repeatMs > 0 && at - this.lastNotifiedAt >= repeatMs);
        return due ? [this.event("repeat", value, at, true, at - (this.since ?? firedAt), firedAt)] : [];
      }
    }
  }

  private reset() {
    this.phase = "inactive";
    this.since = null;
    this.firedAt = null;
    this.lastNotifiedAt = null;
  }
}

/** All enabled rules' machines; rules can be replaced without losing the state of unchanged ids. */
export class AlertEngine {
  private machines = new Map<string, RuleMachine>();

  /**
   * Installs the current rule set. A rule whose id is kept keeps its state (an edited
   * threshold applies from the next value on); rules that are gone (deleted or disabled) are
   * dropped without an event. Returns the ids that are new, for restoring their state.
   */
  setRules(rules: AlertRuleSpec[]): string[] {
    const added: string[] = [];
    const next = new Map<string, RuleMachine>();
    for (const rule of rules) {
      const m = this.machines.get(rule.id);
      if (m) m.rule = rule;
      else added.push(rule.id);
      next.set(rule.id, m ?? new RuleMachine(rule));
    }
    this.machines = next;
    return added;
  }

  machine(id: string): RuleMachine | undefined {
    return this.machines.get(id);
  }

  rules(): AlertRuleSpec[] {
    return [...this.machines.values()].map((m) => m.rule);
  }

  /** Feeds every rule its metric's value from one sample. */
  evaluate(sample: { at: number; values: Partial<Record<string, number>> }): AlertTransition[] {
    const out: AlertTransition[] = [];
    for (const m of this.machines.values()) out.push(...m.feed(sample.values[m.rule.metric], sample.at));
    return out;
  }
}
