import { describe, expect, it } from "vitest";
import { AlertEngine, RuleMachine, type AlertRuleSpec, type AlertTransition } from "../../server/monitoring/alerts/engine";
import { alertMessage, formatBytes, formatDuration, formatMs, formatValue } from "../../server/monitoring/alerts/format";
import { DEFAULT_RULES } from "../../server/monitoring/alerts/rules";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const s = (seconds: number) => T0 + seconds * 1000;

function rule(over: Partial<AlertRuleSpec> = {}): AlertRuleSpec {
  return {
    id: "r1", name: "Queue too deep", metric: "queue_depth", comparison: ">", threshold: 100, hysteresis: 10,
    forSeconds: 60, repeatMinutes: 30, severity: "warning", silencedUntil: null, ...over,
  };
}

/** Feeds [seconds, value] pairs and returns every event, flattened. */
function run(m: RuleMachine, points: Array<[number, number]>): AlertTransition[] {
  return points.flatMap(([t, v]) => m.feed(v, s(t)));
}

const states = (events: AlertTransition[]) => events.map((e) => e.state);

describe("alert engine: one rule's state machine", () => {
  it("goes pending when the condition holds and fires once it has held for forSeconds", () => {
    const m = new RuleMachine(rule());
    expect(states(m.feed(150, s(0)))).toEqual(["pending"]);
    expect(m.status().phase).toBe("pending");
    expect(m.feed(160, s(30))).toEqual([]);
    expect(m.feed(170, s(59))).toEqual([]);
    const [fired] = m.feed(170, s(60));
    expect(fired).toMatchObject({ state: "firing", value: 170, at: s(60), startsAt: s(60), notify: true });
    expect(m.status().phase).toBe("firing");
    // Firing is reported once, not on every sample.
    expect(m.feed(180, s(70))).toEqual([]);
  });

  it("records pending without notifying, and never fires when the condition clears early", () => {
    const m = new RuleMachine(rule());
    const [pending] = m.feed(150, s(0));
    expect(pending).toMatchObject({ state: "pending", notify: false });
    expect(m.feed(90, s(30))).toEqual([]); // silently back to inactive
    expect(m.status().phase).toBe("inactive");
    expect(m.feed(150, s(61))).toMatchObject([{ state: "pending" }]); // the clock starts again
    expect(m.feed(150, s(100))).toEqual([]);
    expect(m.feed(150, s(121))).toMatchObject([{ state: "firing" }]);
  });

  it("resolves only past threshold − hysteresis, so a value hovering at the line does not flap", () => {
    const m = new RuleMachine(rule({ forSeconds: 0 }));
    expect(states(m.feed(101, s(0)))).toEqual(["firing"]);
    // Around the line (100) and inside the band (90..100): still firing, no events.
    expect(run(m, [[5, 99], [10, 101], [15, 95], [20, 100.5], [25, 91], [30, 99.9]])).toEqual([]);
    expect(m.status().phase).toBe("firing");
    const [resolved] = m.feed(90, s(35));
    expect(resolved).toMatchObject({ state: "resolved", value: 90, startsAt: s(0), notify: true });
    expect(resolved.message).toMatch(/^Resolved after 35 s: Queued units is 90 \(back below 90\)$/);
    expect(m.status().phase).toBe("inactive");
    // Just above the line again starts a new alert.
    expect(states(m.feed(100.5, s(40)))).toEqual(["firing"]);
  });

  it("with hysteresis 0 resolves as soon as the condition is false (db_errors > 0 back to 0)", () => {
    const m = new RuleMachine(rule({ metric: "db_errors", threshold: 0, hysteresis: 0, forSeconds: 0 }));
    expect(states(m.feed(3, s(0)))).toEqual(["firing"]);
    expect(states(m.feed(0, s(5)))).toEqual(["resolved"]);
  });

  it("fires at once with forSeconds 0, skipping pending", () => {
    const m = new RuleMachine(rule({ forSeconds: 0 }));
    expect(m.feed(100, s(0))).toEqual([]); // equal is not above
    const events = m.feed(250, s(1));
    expect(states(events)).toEqual(["firing"]);
    expect(events[0].message).toBe("Queued units is 250 (above 100)");
  });

  it("handles \"<\" rules: fires below the threshold, resolves above threshold + hysteresis", () => {
    const m = new RuleMachine(rule({ metric: "disk_free_ratio", comparison: "<", threshold: 0.1, hysteresis: 0.02, forSeconds: 60 }));
    expect(m.feed(0.5, s(0))).toEqual([]);
    expect(states(m.feed(0.042, s(10)))).toEqual(["pending"]);
    const [fired] = m.feed(0.042, s(70));
    expect(fired.state).toBe("firing");
    expect(fired.message).toBe("Free disk is 4.2% of the data volume (below 10% for 60 s)");
    expect(run(m, [[80, 0.11], [90, 0.119], [100, 0.09]])).toEqual([]); // inside 10%..12%
    const [resolved] = m.feed(0.121, s(110));
    expect(resolved).toMatchObject({ state: "resolved" });
    expect(resolved.message).toBe("Resolved after 40 s: Free disk is 12.1% of the data volume (back above 12%)");
  });

  it("sends a reminder at most every repeatMinutes while firing", () => {
    const m = new RuleMachine(rule({ forSeconds: 0, repeatMinutes: 10 }));
    expect(states(m.feed(200, s(0)))).toEqual(["firing"]);
    const points: Array<[number, number]> = [];
    for (let t = 5; t <= 25 * 60; t += 5) points.push([t, 200]); // 25 minutes of samples every 5 s
    const events = run(m, points);
    expect(states(events)).toEqual(["repeat", "repeat"]);
    expect(events.map((e) => e.at)).toEqual([s(600), s(1200)]);
    expect(events[0]).toMatchObject({ notify: true, startsAt: s(0) });
    expect(events[0].message).toBe("Still firing: Queued units is 200 (above 100 for 10 min)");
  });

  it("never reminds with repeatMinutes 0", () => {
    const m = new RuleMachine(rule({ forSeconds: 0, repeatMinutes: 0 }));
    m.feed(200, s(0));
    expect(run(m, [[600, 200], [6000, 200], [60000, 200]])).toEqual([]);
  });

  it("while silenced tracks state and records events but notifies nothing, then catches up after", () => {
    const silencedUntil = s(300);
    const m = new RuleMachine(rule({ forSeconds: 60, repeatMinutes: 60, silencedUntil }));
    const during = run(m, [[0, 150], [60, 150], [120, 150]]);
    expect(states(during)).toEqual(["pending", "firing"]);
    expect(during.every((e) => !e.notify)).toBe(true);
    expect(m.status().phase).toBe("firing");
    // Silence over while still firing: the alert nobody heard of goes out once, as a reminder.
    const after = run(m, [[301, 150], [400, 150]]);
    expect(after).toMatchObject([{ state: "repeat", notify: true, startsAt: s(60) }]);
  });

  it("records a resolve during silence without notifying it", () => {
    const m = new RuleMachine(rule({ forSeconds: 0 }));
    expect(m.feed(150, s(0))[0].notify).toBe(true);
    m.rule = { ...m.rule, silencedUntil: s(1000) };
    const [resolved] = m.feed(50, s(100));
    expect(resolved).toMatchObject({ state: "resolved", notify: false });
    expect(m.status().phase).toBe("inactive");
  });

  it("ignores NaN and missing values: no transition, no reminder", () => {
    const m = new RuleMachine(rule({ forSeconds: 60, repeatMinutes: 1 }));
    expect(m.feed(Number.NaN, s(0))).toEqual([]);
    expect(m.feed(undefined, s(1))).toEqual([]);
    expect(m.status().phase).toBe("inactive");
    m.feed(150, s(10));
    expect(m.feed(Number.NaN, s(20))).toEqual([]);
    expect(m.status().phase).toBe("pending"); // a gap in the data does not cancel pending
    expect(states(m.feed(150, s(70)))).toEqual(["firing"]);
    expect(m.feed(Number.NaN, s(70 + 120))).toEqual([]); // a reminder is due, but there is no value
    expect(m.status().phase).toBe("firing");
    expect(states(m.feed(150, s(70 + 121)))).toEqual(["repeat"]);
  });

  it("restored as firing after a restart, it sends its resolve and does not fire again", () => {
    const m = new RuleMachine(rule({ forSeconds: 0 }));
    m.restoreFiring(s(-600), s(-600));
    expect(m.feed(150, s(0))).toEqual([]);
    expect(m.feed(50, s(10))).toMatchObject([{ state: "resolved", notify: true, startsAt: s(-600) }]);
  });
});

describe("alert engine: many rules", () => {
  it("feeds each rule its metric from a sample and keeps state across rule reloads", () => {
    const engine = new AlertEngine();
    engine.setRules([rule({ id: "q", forSeconds: 0 }), rule({ id: "mem", name: "High memory", metric: "rss_bytes", threshold: 1024 ** 3, hysteresis: 0, forSeconds: 0 })]);
    const e1 = engine.evaluate({ at: s(0), values: { queue_depth: 500, rss_bytes: 2 * 1024 ** 3 } });
    expect(e1.map((e) => `${e.rule.id}:${e.state}`).sort()).toEqual(["mem:firing", "q:firing"]);
    // Reload with q edited and mem removed: q stays firing (no second "firing"), mem is dropped.
    const added = engine.setRules([rule({ id: "q", forSeconds: 0, threshold: 1000, hysteresis: 0 })]);
    expect(added).toEqual([]);
    expect(engine.evaluate({ at: s(5), values: { queue_depth: 999, rss_bytes: 0 } }).map((e) => e.state)).toEqual(["resolved"]);
    expect(engine.machine("mem")).toBeUndefined();
  });
});

describe("alert messages", () => {
  it("formats values by metric", () => {
    expect(formatBytes(1.5 * 1024 ** 3)).toBe("1.5 GiB");
    expect(formatBytes(128 * 1024 ** 2)).toBe("128 MiB");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatMs(250)).toBe("250 ms");
    expect(formatMs(1234)).toBe("1.2 s");
    expect(formatMs(2.345)).toBe("2.3 ms");
    expect(formatDuration(60_000)).toBe("60 s");
    expect(formatDuration(300_000)).toBe("5 min");
    expect(formatDuration(3 * 3600_000)).toBe("3 h");
    expect(formatValue("task_failure_ratio", 0.253)).toBe("25.3% of results");
    expect(formatValue("results_per_second", 12.5)).toBe("12.5/s");
    expect(formatValue("cpu_percent", 93.24)).toBe("93.2% of one core");
    expect(formatValue("some_future_series", 3.14159)).toBe("3.14");
  });

  it("reads like a sentence for each default rule", () => {
    const byMetric = Object.fromEntries(DEFAULT_RULES.map((r) => [r.metric, r]));
    const msg = (metric: string, value: number, heldMs: number) => alertMessage(byMetric[metric], "firing", value, heldMs);
    expect(msg("disk_free_ratio", 0.042, 60_000)).toBe("Free disk is 4.2% of the data volume (below 10% for 60 s)");
    expect(msg("event_loop_lag_ms", 412.7, 61_000)).toBe("Event-loop lag (p99) is 413 ms (above 200 ms for 61 s)");
    expect(msg("rss_bytes", 1.62 * 1024 ** 3, 125_000)).toBe("Server memory (RSS) is 1.6 GiB (above 1.5 GiB for 2 min)");
    expect(msg("starved", 1, 120_000)).toBe("No volunteer is online while units are queued (for 2 min)");
    expect(msg("task_failure_ratio", 0.35, 120_000)).toBe("Task failure rate is 35% of results (above 20% for 2 min)");
    expect(msg("db_errors", 2, 0)).toBe("2 database errors in the last interval (above 0)");
    expect(alertMessage(byMetric.rss_bytes, "pending", 1.6 * 1024 ** 3, 0)).toBe("Server memory (RSS) is 1.6 GiB (above 1.5 GiB; fires if it lasts 2 min)");
    expect(alertMessage(byMetric.rss_bytes, "resolved", 1.2 * 1024 ** 3, 600_000)).toBe("Resolved after 10 min: Server memory (RSS) is 1.2 GiB (back below 1.4 GiB)");
    expect(alertMessage(byMetric.starved, "resolved", 0, 600_000)).toBe("Resolved after 10 min: Volunteers are online again (or nothing is queued)");
  });
});
