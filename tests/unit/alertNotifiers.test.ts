import { describe, expect, it } from "vitest";
import { alertmanagerBody, slackBody, emailContent, describeNetworkError, type AlertNotice } from "../../server/monitoring/notify";
import { parseChannelConfig } from "../../server/monitoring/notify/channels";

const at = Date.UTC(2026, 0, 1, 12, 5, 0);
const startsAt = Date.UTC(2026, 0, 1, 12, 0, 0);
const ctx = { instance: "grid.example.com", externalUrl: "https://grid.example.com", receiver: "ops" };

const firing: AlertNotice = {
  name: "Low free disk", state: "firing", severity: "critical", at, startsAt, value: 0.042,
  message: "Free disk is 4.2% of the data volume (below 10% for 60 s)",
  description: "The data directory's volume is nearly full.",
};
const resolved: AlertNotice = { ...firing, state: "resolved", at: at + 60_000, message: "Resolved after 6 min: Free disk is 15% of the data volume (back above 12%)" };

describe("Slack-compatible webhook body", () => {
  it("has a text fallback and blocks, with an emoji by state", () => {
    const body = slackBody(firing, ctx);
    expect(body.text).toBe("🔥 [FIRING] Low free disk: Free disk is 4.2% of the data volume (below 10% for 60 s)");
    expect(body.blocks).toEqual([
      { type: "section", text: { type: "mrkdwn", text: "🔥 *FIRING* · *Low free disk*\nFree disk is 4.2% of the data volume (below 10% for 60 s)" } },
      { type: "section", text: { type: "mrkdwn", text: "_The data directory's volume is nearly full._" } },
      { type: "context", elements: [{ type: "mrkdwn", text: "severity: *critical* · grid.example.com · 2026-01-01T12:05:00.000Z · <https://grid.example.com|open Tabgrid>" }] },
    ]);
    expect(slackBody(resolved, ctx).text).toMatch(/^✅ \[RESOLVED\] Low free disk: Resolved after 6 min/);
    expect(slackBody({ ...firing, state: "repeat" }, ctx).text).toMatch(/^🔁 \[STILL FIRING\]/);
    expect(slackBody({ ...firing, state: "test" }, ctx).text).toMatch(/^🧪 \[TEST\]/);
  });

  it("escapes Slack's control characters in mrkdwn", () => {
    const body = slackBody({ ...firing, name: "a <b> & c", description: undefined }, { instance: "h" });
    expect((body.blocks![0] as { text: { text: string } }).text.text).toContain("*a &lt;b&gt; &amp; c*");
    expect(body.blocks).toHaveLength(2);
  });
});

describe("Alertmanager webhook body", () => {
  it("has Alertmanager's version 4 shape for a firing alert", () => {
    const body = alertmanagerBody(firing, ctx);
    const labels = { alertname: "Low free disk", severity: "critical", instance: "grid.example.com" };
    const annotations = { summary: firing.message, description: "The data directory's volume is nearly full." };
    expect(body).toEqual({
      version: "4",
      groupKey: '{}:{alertname="Low free disk"}',
      truncatedAlerts: 0,
      status: "firing",
      receiver: "ops",
      groupLabels: { alertname: "Low free disk" },
      commonLabels: labels,
      commonAnnotations: annotations,
      externalURL: "https://grid.example.com",
      alerts: [
        {
          status: "firing", labels, annotations,
          startsAt: "2026-01-01T12:00:00.000Z", endsAt: "0001-01-01T00:00:00Z",
          generatorURL: "https://grid.example.com/admin",
          fingerprint: expect.stringMatching(/^[0-9a-f]{16}$/),
        },
      ],
    });
  });

  it("marks a resolve with its end time and the same fingerprint as its firing", () => {
    const f = alertmanagerBody(firing, ctx);
    const r = alertmanagerBody(resolved, ctx);
    expect(r.status).toBe("resolved");
    expect(r.alerts[0]).toMatchObject({ status: "resolved", startsAt: "2026-01-01T12:00:00.000Z", endsAt: "2026-01-01T12:06:00.000Z" });
    expect(r.alerts[0].fingerprint).toBe(f.alerts[0].fingerprint);
    expect(alertmanagerBody({ ...firing, name: "Other" }, ctx).alerts[0].fingerprint).not.toBe(f.alerts[0].fingerprint);
    // A reminder is still "firing" for Alertmanager consumers.
    expect(alertmanagerBody({ ...firing, state: "repeat" }, ctx).status).toBe("firing");
  });
});

describe("email and channel config", () => {
  it("writes a subject that says state, alert and severity", () => {
    expect(emailContent(firing, ctx).subject).toBe("[Tabgrid] FIRING: Low free disk (critical)");
    expect(emailContent(resolved, ctx).subject).toBe("[Tabgrid] RESOLVED: Low free disk");
    const text = emailContent(firing, ctx).text;
    expect(text.split("\n")[0]).toBe(firing.message);
    expect(text).toContain("Instance: grid.example.com");
    expect(text).toContain("https://grid.example.com/admin");
  });

  it("reads stored channel configs and refuses unreadable ones", () => {
    expect(parseChannelConfig({ name: "ops", kind: "webhook", config: '{"url":"https://hooks.example.com/x","format":"alertmanager"}' }))
      .toEqual({ kind: "webhook", name: "ops", url: "https://hooks.example.com/x", format: "alertmanager" });
    expect(parseChannelConfig({ name: "ops", kind: "email", config: '{"to":"ops@example.com"}' })).toEqual({ kind: "email", name: "ops", to: ["ops@example.com"] });
    expect(parseChannelConfig({ name: "x", kind: "webhook", config: '{"url":"file:///etc/passwd"}' })).toBeNull();
    expect(parseChannelConfig({ name: "x", kind: "email", config: "not json" })).toBeNull();
    expect(parseChannelConfig({ name: "x", kind: "pager", config: "{}" })).toBeNull();
  });

  it("describes network failures in a few words", () => {
    const refused = Object.assign(new TypeError("fetch failed"), { cause: { code: "ECONNREFUSED" } });
    expect(describeNetworkError(refused, "http://127.0.0.1:9/hook", 10_000)).toBe("connection refused by 127.0.0.1:9");
    const timeout = Object.assign(new Error("The operation was aborted due to timeout"), { name: "TimeoutError" });
    expect(describeNetworkError(timeout, "https://hooks.example.com/secret", 2500)).toBe("no answer from hooks.example.com within 2.5 s");
  });
});
