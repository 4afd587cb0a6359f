import { EventEmitter } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SMTPServer } from "smtp-server";
import { startTestServer, createUserWithKey, waitFor, sleep, type TestServer } from "../helpers/server";
import { trpc, trpcError } from "../helpers/clients";
import { startAlerting, type AlertManager } from "../../server/monitoring/alerts/manager";
import { DEFAULT_RULES, seedDefaultRules } from "../../server/monitoring/alerts/rules";
import { SERIES, type Sample, type SeriesName } from "../../server/monitoring/series";
import type { AlertmanagerBody, SlackBody } from "../../server/monitoring/notify/webhook";

// ---- receivers ---------------------------------------------------------------------------

interface Hook {
  path: string;
  body: Record<string, unknown>;
}

/** A real webhook receiver on 127.0.0.1; "/fail" answers 500. */
async function startReceiver() {
  const calls: Hook[] = [];
  const server = http.createServer((req, res) => {
    let data = "";
    req.setEncoding("utf8").on("data", (d: string) => (data += d));
    req.on("end", () => {
      if (req.url === "/fail") return res.writeHead(500, { "content-type": "text/plain" }).end("receiver exploded");
      calls.push({ path: req.url ?? "", body: JSON.parse(data) as Record<string, unknown> });
      res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    on: (path: string) => calls.filter((c) => c.path === path),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

interface Mail {
  from: string;
  to: string[];
  user: string | undefined;
  raw: string;
}

/** A real SMTP server (no TLS, password required) that keeps what it receives. */
async function startMailSink() {
  const mails: Mail[] = [];
  const server = new SMTPServer({
    disabledCommands: ["STARTTLS"],
    allowInsecureAuth: true,
    logger: false,
    onAuth(auth, _session, cb) {
      if (auth.username === "alerts" && auth.password === "s3cret") cb(null, { user: auth.username });
      else cb(new Error("bad credentials"));
    },
    onData(stream, session, cb) {
      let raw = "";
      stream.setEncoding("utf8").on("data", (d: string) => (raw += d));
      stream.on("end", () => {
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          user: session.user as string | undefined,
          raw,
        });
        cb();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.server.address() as AddressInfo).port;
  return { port, mails, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

// ---- samples -----------------------------------------------------------------------------

/** A healthy server: no default rule is anywhere near its threshold. */
const HEALTHY = {
  ...(Object.fromEntries(Object.keys(SERIES).map((k) => [k, 0])) as Record<SeriesName, number>),
  disk_free_ratio: 0.6, disk_free_bytes: 200e9, rss_bytes: 200e6, event_loop_lag_ms: 12, volunteers: 3, threads: 12,
};

function sample(at: number, values: Partial<Record<SeriesName, number>>): Sample {
  return { at, values: { ...HEALTHY, ...values } };
}

const subjectOf = (m: Mail) => /^Subject: (.*)$/m.exec(m.raw)?.[1];

// ---- tests -------------------------------------------------------------------------------

describe("alerting: rules, channels and notifications", () => {
  let srv: TestServer;
  let hooks: Awaited<ReturnType<typeof startReceiver>>;
  let smtp: Awaited<ReturnType<typeof startMailSink>>;
  let admin: Awaited<ReturnType<typeof createUserWithKey>>;
  let user: Awaited<ReturnType<typeof createUserWithKey>>;
  let api: ReturnType<typeof trpc>;
  let manager: AlertManager;
  const samples = new EventEmitter();
  const logs: string[] = [];
  let ruleId = "";
  const channelIds: Record<string, string> = {};

  beforeAll(async () => {
    [hooks, smtp] = await Promise.all([startReceiver(), startMailSink()]);
    srv = await startTestServer({
      // The server's own alerting stays off: these tests feed the manager their own samples.
      TABGRID_ALERTS: "off",
      SMTP_URL: `smtp://alerts:s3cret@127.0.0.1:${smtp.port}`,
      ALERT_EMAIL_FROM: "alerts@tabgrid.test",
    });
    admin = await createUserWithKey(srv.deps, "root@example.com"); // first account: admin
    user = await createUserWithKey(srv.deps, "someone@example.com");
    api = trpc(srv.url, admin.apiKey);
  });
  afterAll(async () => {
    await manager?.stop();
    await srv?.close();
    await hooks?.close();
    await smtp?.close();
  });

  it("seeds the default rules once, into an empty table", async () => {
    manager = startAlerting(srv.deps, samples, { log: (m) => logs.push(m) });
    await manager.ready;
    const rules = await api.alerts.rules.query();
    expect(rules.map((r) => r.name)).toEqual(DEFAULT_RULES.map((r) => r.name));
    expect(rules.find((r) => r.metric === "disk_free_ratio")).toMatchObject({ comparison: "<", threshold: 0.1, hysteresis: 0.02, forSeconds: 60, severity: "critical", state: "inactive" });
    expect(await seedDefaultRules(srv.deps.db)).toBe(0);
    expect(await srv.deps.db.alertRule.count()).toBe(DEFAULT_RULES.length);
  });

  it("fires, then resolves: webhooks in both formats, emails, history and in-app notifications", async () => {
    const am = await api.alerts.createChannel.mutate({ kind: "webhook", name: "pager", url: `${hooks.url}/am`, format: "alertmanager" });
    const slack = await api.alerts.createChannel.mutate({ kind: "webhook", name: "chat", url: `${hooks.url}/slack`, format: "slack" });
    const mail = await api.alerts.createChannel.mutate({ kind: "email", name: "ops mail", to: "ops@example.com" });
    const broken = await api.alerts.createChannel.mutate({ kind: "webhook", name: "broken", url: `http://127.0.0.1:${await closedPort()}/hook` });
    Object.assign(channelIds, { am: am.id, slack: slack.id, mail: mail.id, broken: broken.id });
    expect((await api.alerts.channels.query()).map((c) => [c.name, c.kind, c.config])).toEqual([
      ["pager", "webhook", { url: `${hooks.url}/am`, format: "alertmanager" }],
      ["chat", "webhook", { url: `${hooks.url}/slack`, format: "slack" }],
      ["ops mail", "email", { to: "ops@example.com" }],
      ["broken", "webhook", { url: broken.config.url, format: "slack" }],
    ]);

    const rule = await api.alerts.createRule.mutate({
      name: "Queue too deep", metric: "queue_depth", comparison: ">", threshold: 100, hysteresis: 10, forSeconds: 10, severity: "critical",
      description: "Volunteers can't keep up.",
    });
    ruleId = rule.id;

    const t0 = Date.now();
    samples.emit("sample", sample(t0, { queue_depth: 150 }));
    samples.emit("sample", sample(t0 + 5_000, { queue_depth: 150 }));
    await manager.idle();
    expect(hooks.calls).toHaveLength(0); // pending is recorded, not notified
    expect((await api.alerts.rules.query()).find((r) => r.id === ruleId)).toMatchObject({ state: "pending" });

    samples.emit("sample", sample(t0 + 10_000, { queue_depth: 160 }));
    await waitFor(() => hooks.on("/am").length === 1 && hooks.on("/slack").length === 1 && smtp.mails.length === 1, 10_000, "the firing notifications");
    samples.emit("sample", sample(t0 + 20_000, { queue_depth: 95 })); // inside the hysteresis band: still firing
    await manager.idle();
    expect(hooks.calls).toHaveLength(2);
    samples.emit("sample", sample(t0 + 30_000, { queue_depth: 80 }));
    await waitFor(() => hooks.on("/am").length === 2 && hooks.on("/slack").length === 2 && smtp.mails.length === 2, 10_000, "the resolved notifications");
    await manager.idle();

    // Alertmanager format: firing then resolved, one alert each, same fingerprint.
    const [amFiring, amResolved] = hooks.on("/am").map((c) => c.body as unknown as AlertmanagerBody);
    expect(amFiring).toMatchObject({
      version: "4", status: "firing", receiver: "tabgrid", groupLabels: { alertname: "Queue too deep" },
      commonLabels: { alertname: "Queue too deep", severity: "critical" },
      alerts: [{ status: "firing", labels: { alertname: "Queue too deep", severity: "critical" }, endsAt: "0001-01-01T00:00:00Z",
        annotations: { summary: "Queued units is 160 (above 100 for 10 s)", description: "Volunteers can't keep up." } }],
    });
    expect(amResolved).toMatchObject({ status: "resolved", alerts: [{ status: "resolved", startsAt: new Date(t0 + 10_000).toISOString(), endsAt: new Date(t0 + 30_000).toISOString() }] });
    expect(amResolved.alerts[0].fingerprint).toBe(amFiring.alerts[0].fingerprint);

    // Slack format: text with the state's emoji.
    const [slackFiring, slackResolved] = hooks.on("/slack").map((c) => c.body as unknown as SlackBody);
    expect(slackFiring.text).toBe("🔥 [FIRING] Queue too deep: Queued units is 160 (above 100 for 10 s)");
    expect(slackResolved.text).toBe("✅ [RESOLVED] Queue too deep: Resolved after 20 s: Queued units is 80 (back below 90)");
    expect(slackFiring.blocks?.length).toBeGreaterThan(0);

    // Email: authenticated with the SMTP_URL's credentials, from ALERT_EMAIL_FROM.
    expect(smtp.mails.map((m) => [m.from, m.to, m.user, subjectOf(m)])).toEqual([
      ["alerts@tabgrid.test", ["ops@example.com"], "alerts", "[Tabgrid] FIRING: Queue too deep (critical)"],
      ["alerts@tabgrid.test", ["ops@example.com"], "alerts", "[Tabgrid] RESOLVED: Queue too deep"],
    ]);
    expect(smtp.mails[0].raw).toContain("Queued units is 160 (above 100 for 10 s)");

    // The broken channel failed (logged, twice) without stopping the others.
    expect(logs.filter((l) => /"broken" webhook .* failed .*connection refused/.test(l))).toHaveLength(2);

    // History, newest first.
    const events = await api.alerts.events.query({ ruleId, limit: 10 });
    expect(events.items.map((e) => [e.state, e.value])).toEqual([["resolved", 80], ["firing", 160], ["pending", 150]]);
    expect(events.items.every((e) => e.name === "Queue too deep")).toBe(true);
    expect(events.nextCursor).toBeNull();
    const page1 = await api.alerts.events.query({ ruleId, limit: 2 });
    const page2 = await api.alerts.events.query({ ruleId, limit: 2, cursor: page1.nextCursor! });
    expect([...page1.items, ...page2.items].map((e) => e.state)).toEqual(["resolved", "firing", "pending"]);

    // In-app notifications for admins.
    const notes = await api.alerts.notifications.query({ limit: 10 });
    expect(notes.items.map((n) => [n.title, n.severity, n.readAt])).toEqual([
      ["Resolved: Queue too deep", "info", null],
      ["Firing: Queue too deep", "critical", null],
    ]);
    expect(await api.alerts.unreadCount.query()).toEqual({ count: 2 });
    await api.alerts.markRead.mutate({ ids: [notes.items[1].id] });
    expect(await api.alerts.unreadCount.query()).toEqual({ count: 1 });
    expect((await api.alerts.notifications.query({ unreadOnly: true, limit: 10 })).items.map((n) => n.title)).toEqual(["Resolved: Queue too deep"]);
    await api.alerts.markRead.mutate({ all: true });
    expect(await api.alerts.unreadCount.query()).toEqual({ count: 0 });
  });

  it("while silenced records the alert but sends nothing; after unsilencing it catches up", async () => {
    await api.alerts.updateChannel.mutate({ id: channelIds.broken, enabled: false });
    const silenced = await api.alerts.silence.mutate({ id: ruleId, minutes: 10 });
    expect(new Date(silenced.silencedUntil!).getTime()).toBeGreaterThan(Date.now() + 9 * 60_000);
    const hooksBefore = hooks.calls.length;
    const mailsBefore = smtp.mails.length;

    const t0 = Date.now();
    samples.emit("sample", sample(t0, { queue_depth: 500 }));
    samples.emit("sample", sample(t0 + 11_000, { queue_depth: 500 }));
    await manager.idle();
    await sleep(300); // nothing is on its way, either
    expect(hooks.calls.length).toBe(hooksBefore);
    expect(smtp.mails.length).toBe(mailsBefore);
    expect((await api.alerts.rules.query()).find((r) => r.id === ruleId)).toMatchObject({ silenced: true, state: "firing" });
    expect((await api.alerts.events.query({ ruleId, limit: 2 })).items.map((e) => e.state)).toEqual(["firing", "pending"]);
    expect(await api.alerts.unreadCount.query()).toEqual({ count: 0 });

    await api.alerts.unsilence.mutate({ id: ruleId });
    samples.emit("sample", sample(t0 + 12_000, { queue_depth: 500 }));
    await waitFor(() => hooks.on("/slack").length === 3, 10_000, "the catch-up reminder");
    expect((hooks.on("/slack")[2].body as unknown as SlackBody).text).toMatch(/^🔁 \[STILL FIRING\] Queue too deep: Still firing: Queued units is 500/);
    expect((hooks.on("/am")[2].body as unknown as AlertmanagerBody).status).toBe("firing");

    samples.emit("sample", sample(t0 + 13_000, { queue_depth: 0 }));
    await waitFor(() => hooks.on("/slack").length === 4, 10_000, "the resolve");
    await manager.idle();
    expect((await api.alerts.events.query({ ruleId, limit: 3 })).items.map((e) => e.state)).toEqual(["resolved", "repeat", "firing"]);
  });

  it("caps the notifications a channel gets per minute; the history stays complete", async () => {
    await manager.stop();
    logs.length = 0;
    manager = startAlerting(srv.deps, samples, { log: (m) => logs.push(m), maxPerMinute: 3 });
    await manager.ready;
    const flappy = await api.alerts.createRule.mutate({ name: "Flappy", metric: "jobs_running", comparison: ">", threshold: 0, forSeconds: 0 });
    const slackBefore = hooks.on("/slack").length;
    const t0 = Date.now();
    for (let i = 0; i < 10; i++) samples.emit("sample", sample(t0 + i * 1000, { jobs_running: i % 2 === 0 ? 5 : 0 }));
    await manager.idle();
    expect(hooks.on("/slack").length - slackBefore).toBe(3);
    expect(logs.filter((l) => /rate limit: .*"chat" webhook/.test(l))).toHaveLength(7);
    expect((await api.alerts.events.query({ ruleId: flappy.id, limit: 50 })).items).toHaveLength(10);
    await api.alerts.deleteRule.mutate({ id: flappy.id });
    // Its history outlives it, by name.
    const history = await api.alerts.events.query({ limit: 50 });
    expect(history.items.filter((e) => e.name === "Flappy" && e.ruleId === null)).toHaveLength(10);
  });

  it("a firing alert survives a restart of alerting: not notified again, and its resolve still goes out", async () => {
    await manager.stop();
    manager = startAlerting(srv.deps, samples, { log: (m) => logs.push(m) });
    const t0 = Date.now();
    samples.emit("sample", sample(t0, { queue_depth: 300 }));
    samples.emit("sample", sample(t0 + 10_000, { queue_depth: 300 }));
    await manager.idle();
    const firedAt = hooks.on("/am").length;
    expect((hooks.on("/am")[firedAt - 1].body as unknown as AlertmanagerBody).status).toBe("firing");

    await manager.stop();
    manager = startAlerting(srv.deps, samples, { log: (m) => logs.push(m) });
    await manager.ready;
    expect((await api.alerts.rules.query()).find((r) => r.id === ruleId)).toMatchObject({ state: "firing" });
    samples.emit("sample", sample(t0 + 20_000, { queue_depth: 300 }));
    await manager.idle();
    expect(hooks.on("/am")).toHaveLength(firedAt);
    samples.emit("sample", sample(t0 + 30_000, { queue_depth: 10 }));
    await manager.idle();
    expect(hooks.on("/am")).toHaveLength(firedAt + 1);
    expect((hooks.on("/am")[firedAt].body as unknown as AlertmanagerBody).alerts[0]).toMatchObject({
      status: "resolved", startsAt: new Date(t0 + 10_000).toISOString(), endsAt: new Date(t0 + 30_000).toISOString(),
    });
  });

  it("testChannel delivers a test notification, or says clearly why not", async () => {
    const before = hooks.on("/slack").length;
    expect(await api.alerts.testChannel.mutate({ id: channelIds.slack })).toEqual({ ok: true });
    expect(hooks.on("/slack")).toHaveLength(before + 1);
    expect((hooks.on("/slack")[before].body as unknown as SlackBody).text).toMatch(/^🧪 \[TEST\] Tabgrid test notification: .*"chat"/);

    const mailsBefore = smtp.mails.length;
    expect(await api.alerts.testChannel.mutate({ id: channelIds.mail })).toEqual({ ok: true });
    expect(subjectOf(smtp.mails[mailsBefore])).toMatch(/^\[Tabgrid\] Test notification from /);

    const refused = await api.alerts.testChannel.mutate({ id: channelIds.broken });
    expect(refused).toEqual({ ok: false, error: expect.stringMatching(/^connection refused by 127\.0\.0\.1:\d+$/) });

    const failing = await api.alerts.createChannel.mutate({ kind: "webhook", name: "500", url: `${hooks.url}/fail` });
    expect(await api.alerts.testChannel.mutate({ id: failing.id })).toEqual({ ok: false, error: expect.stringMatching(/answered HTTP 500 Internal Server Error: receiver exploded/) });

    const tests = (await api.alerts.events.query({ limit: 4 })).items;
    expect(tests.map((e) => e.state)).toEqual(["test", "test", "test", "test"]);
    expect(tests[0].message).toMatch(/Test notification to "500" failed: .*HTTP 500/);
    await api.alerts.deleteChannel.mutate({ id: failing.id });
    expect((await api.alerts.channels.query()).some((c) => c.id === failing.id)).toBe(false);
  });

  it("validates rules and channels", async () => {
    const bad = await trpcError(api.alerts.createChannel.mutate({ kind: "webhook", name: "x", url: "ftp://example.com/hook" }));
    expect(bad).toMatchObject({ code: "BAD_REQUEST", message: expect.stringMatching(/url: must be an http:\/\/ or https:\/\/ URL/) });
    expect(await trpcError(api.alerts.createChannel.mutate({ kind: "email", name: "x", to: "not-an-address" }))).toMatchObject({ code: "BAD_REQUEST", message: expect.stringMatching(/to: must be an email address/) });
    expect(await trpcError(api.alerts.createRule.mutate({ name: "x", metric: "nonsense" as "queue_depth", comparison: ">", threshold: 1 }))).toMatchObject({ code: "BAD_REQUEST", message: expect.stringMatching(/metric/) });
    expect(await trpcError(api.alerts.createRule.mutate({ name: "Queue too deep", metric: "queue_depth", comparison: ">", threshold: 1 }))).toMatchObject({ code: "CONFLICT" });
    expect(await trpcError(api.alerts.updateRule.mutate({ id: "no-such-rule", threshold: 5 }))).toMatchObject({ code: "NOT_FOUND" });
    expect(await trpcError(api.alerts.testChannel.mutate({ id: "no-such-channel" }))).toMatchObject({ code: "NOT_FOUND" });

    const disabled = await api.alerts.enableRule.mutate({ id: ruleId, enabled: false });
    expect(disabled.enabled).toBe(false);
    expect((await api.alerts.rules.query()).find((r) => r.id === ruleId)).toMatchObject({ enabled: false, state: null });
  });

  it("refuses everyone but admins", async () => {
    const asUser = trpc(srv.url, user.apiKey);
    // One call at a time: a refusal that arrived before its turn would be an unhandled rejection.
    for (const call of [
      () => asUser.alerts.rules.query(),
      () => asUser.alerts.channels.query(),
      () => asUser.alerts.events.query({ limit: 5 }),
      () => asUser.alerts.unreadCount.query(),
      () => asUser.alerts.silence.mutate({ id: ruleId, minutes: 5 }),
      () => asUser.alerts.createChannel.mutate({ kind: "webhook", name: "sneaky", url: "https://example.com/hook" }),
      () => asUser.alerts.testChannel.mutate({ id: channelIds.slack }),
    ]) {
      expect(await trpcError(call())).toMatchObject({ code: "FORBIDDEN", httpStatus: 403 });
    }
    expect(await trpcError(trpc(srv.url).alerts.rules.query())).toMatchObject({ code: "UNAUTHORIZED" });
    expect((await api.alerts.channels.query()).some((c) => c.name === "sneaky")).toBe(false);
  });
});
