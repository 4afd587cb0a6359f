/**
 * `tabgrid watch`: an outside watchdog for a Tabgrid server, in the manner of Monit or Uptime
 * Kuma. The server's own alerts cannot report that the server is gone, so this runs elsewhere,
 * probes GET /api/health and notifies through webhooks and email (no database: channels come
 * from flags and the environment).
 *
 * States, one output line per change: "up" (first good probe, or a recovery before "down"),
 * "failing" (a probe failed, fewer than --failures in a row), "down" (--failures in a row:
 * a "firing" notification), "recovered" (a good probe after "down": a "resolved" one).
 * There are no reminders while down: the "firing" said it, and `--once` from cron is the
 * tool for periodic checks. `--once` probes once, prints, exits 0 when up and 1 otherwise, and
 * sends nothing (a single probe can't tell "still down" from "newly down").
 * A notification that fails is retried twice (after 1 s and 5 s) and then reported on stderr;
 * the watch goes on.
 */
import { parse, UsageError } from "../args";
import { describeNetworkError, notify, describeTarget, type AlertNotice, type ChannelTarget, type NotifyContext, type WebhookFormat } from "../../server/monitoring/notify";
import { emailAddress, webhookUrl } from "../../server/monitoring/notify/channels";

export interface ProbeResult {
  ok: boolean;
  /** Why it failed: "connection refused by 127.0.0.1:3000", "HTTP 503", … */
  reason?: string;
  latencyMs: number;
}

/** One health probe: up means HTTP 200 with {"status":"ok"}; anything else says why not. */
export async function probe(url: string, timeoutMs: number): Promise<ProbeResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const healthUrl = `${url}/api/health`;
  let res: Response;
  try {
    res = await fetch(healthUrl, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: "application/json" } });
  } catch (e) {
    return { ok: false, reason: describeNetworkError(e, healthUrl, timeoutMs), latencyMs: elapsed() };
  }
  type Health = { status?: unknown; database?: unknown } | null;
  let body: Health = null;
  try {
    body = (await res.json()) as Health;
  } catch (e) {
    if ((e as Error).name === "TimeoutError") return { ok: false, reason: `no complete answer within ${timeoutMs / 1000} s`, latencyMs: elapsed() };
  }
  if (res.status !== 200) {
    const db = body && typeof body.database === "string" && body.database !== "ok" ? ` (database: ${body.database})` : "";
    return { ok: false, reason: `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}${db}`, latencyMs: elapsed() };
  }
  if (!body || typeof body !== "object") return { ok: false, reason: "the answer is not Tabgrid's health JSON", latencyMs: elapsed() };
  if (body.status !== "ok") return { ok: false, reason: `status is ${JSON.stringify(body.status ?? null)}, not "ok"`, latencyMs: elapsed() };
  return { ok: true, latencyMs: elapsed() };
}

type WatchState = "up" | "failing" | "down" | "recovered";

interface WatchOptions {
  url: string;
  intervalMs: number;
  failures: number;
  timeoutMs: number;
  channels: ChannelTarget[];
  ctx: NotifyContext;
  once: boolean;
  json: boolean;
}

function options(argv: string[]): WatchOptions {
  const { values, positionals } = parse(argv, {
    url: { type: "string" },
    interval: { type: "string" },
    failures: { type: "string" },
    timeout: { type: "string" },
    webhook: { type: "string", multiple: true },
    "webhook-format": { type: "string" },
    "email-to": { type: "string", multiple: true },
    smtp: { type: "string" },
    once: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  });
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const url = (values.url ?? process.env.TABGRID_URL ?? "").replace(/\/+$/, "");
  if (!url) throw new UsageError("--url is required (or set TABGRID_URL): the Tabgrid server to watch");
  if (!/^https?:\/\/[^/]/.test(url)) throw new UsageError(`--url must start with http:// or https:// (got "${url}")`);

  const seconds = (name: string, raw: string | undefined, fallback: number) => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} is a number of seconds above 0 (got "${raw}")`);
    return n;
  };
  const intervalMs = Math.round(seconds("interval", values.interval, 30) * 1000);
  const timeoutMs = Math.round(seconds("timeout", values.timeout, 10) * 1000);
  const failures = values.failures === undefined ? 2 : Number(values.failures);
  if (!Number.isInteger(failures) || failures < 1) throw new UsageError(`--failures is a whole number of probes, at least 1 (got "${values.failures}")`);

  const format = (values["webhook-format"] ?? "slack") as WebhookFormat;
  if (format !== "slack" && format !== "alertmanager") throw new UsageError(`--webhook-format is slack or alertmanager (got "${format}")`);
  const list = (flag: string[] | undefined, env: string | undefined) =>
    flag?.length ? flag : (env ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const webhooks = list(values.webhook, process.env.TABGRID_WATCH_WEBHOOK);
  for (const w of webhooks) {
    if (!webhookUrl.safeParse(w).success) throw new UsageError(`--webhook must be an http:// or https:// URL (got "${w}")`);
  }
  const emails = list(values["email-to"], process.env.TABGRID_WATCH_EMAIL_TO);
  for (const e of emails) {
    if (!emailAddress.safeParse(e).success) throw new UsageError(`--email-to must be an email address (got "${e}")`);
  }
  const smtpUrl = values.smtp ?? (process.env.SMTP_URL || undefined);
  if (smtpUrl !== undefined && !/^smtps?:\/\/[^/]/.test(smtpUrl)) throw new UsageError(`--smtp must look like smtp://user:pass@host:587 (got "${smtpUrl}")`);
  if (emails.length && !smtpUrl) throw new UsageError("--email-to needs an SMTP relay: --smtp smtp://user:pass@host:587 (or SMTP_URL)");

  const channels: ChannelTarget[] = [
    ...webhooks.map((u) => ({ kind: "webhook" as const, url: u, format })),
    ...(emails.length ? [{ kind: "email" as const, to: emails }] : []),
  ];
  return {
    url, intervalMs, failures, timeoutMs, channels, once: values.once!, json: values.json!,
    ctx: {
      smtpUrl,
      emailFrom: process.env.ALERT_EMAIL_FROM || "tabgrid@localhost",
      instance: url,
      externalUrl: url,
      receiver: "tabgrid-watch",
      timeoutMs,
    },
  };
}

const RETRY_DELAYS_MS = [1000, 5000];

export async function watch(argv: string[]): Promise<number> {
  const o = options(argv);

  const print = (state: WatchState, fields: Record<string, unknown>, text: string) => {
    const at = new Date().toISOString();
    if (o.json) console.log(JSON.stringify({ at, state, url: o.url, ...fields }));
    else console.log(`${at} ${text}`);
  };

  if (o.once) {
    const r = await probe(o.url, o.timeoutMs);
    if (r.ok) print("up", { latencyMs: r.latencyMs }, `up: ${o.url} answered in ${r.latencyMs} ms`);
    else print("down", { reason: r.reason }, `down: ${o.url}: ${r.reason}`);
    return r.ok ? 0 : 1;
  }

  let stopping = false;
  let wake: (() => void) | undefined;
  const stop = () => {
    stopping = true;
    wake?.();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);

  const inflight = new Set<Promise<void>>();
  const send = (notice: AlertNotice) => {
    for (const channel of o.channels) {
      const p = (async () => {
        for (let attempt = 0; ; attempt++) {
          try {
            await notify(channel, notice, o.ctx);
            return;
          } catch (e) {
            if (attempt >= RETRY_DELAYS_MS.length || stopping) {
              console.error(`tabgrid watch: ${describeTarget(channel)} failed: ${(e as Error).message}`);
              return;
            }
            await new Promise((r) => setTimeout(r, RETRY_DELAYS_MS[attempt]));
          }
        }
      })().finally(() => inflight.delete(p));
      inflight.add(p);
    }
  };

  if (!o.json) {
    const where = o.channels.length ? o.channels.map(describeTarget).join(", ") : "no notification channels (add --webhook or --email-to)";
    console.error(`tabgrid watch: probing ${o.url}/api/health every ${o.intervalMs / 1000} s; down after ${o.failures} failed probe(s); notifying ${where}. Ctrl-C to stop.`);
  }

  let state: WatchState | undefined;
  let failed = 0;
  let downSince = 0;
  let lastReason = "";
  while (!stopping) {
    const r = await probe(o.url, o.timeoutMs);
    if (stopping) break;
    const now = Date.now();
    if (r.ok) {
      if (state === "down") {
        const downFor = now - downSince;
        print("recovered", { latencyMs: r.latencyMs, downSeconds: Math.round(downFor / 1000) }, `recovered: ${o.url} answers again (down for ${Math.round(downFor / 1000)} s)`);
        send({
          name: "Tabgrid down", state: "resolved", severity: "critical", at: now, startsAt: downSince, value: 0,
          message: `Tabgrid at ${o.url} is up again (down for ${Math.max(1, Math.round(downFor / 1000))} s; last error: ${lastReason})`,
        });
        state = "up";
      } else if (state !== "up") {
        print("up", { latencyMs: r.latencyMs }, `up: ${o.url} answered in ${r.latencyMs} ms`);
        state = "up";
      }
      failed = 0;
    } else {
      failed++;
      lastReason = r.reason ?? "unknown error";
      if (state !== "down") {
        if (failed >= o.failures) {
          state = "down";
          downSince = now;
          print("down", { reason: lastReason, failures: failed }, `down: ${o.url}: ${lastReason} (${failed} failed probe(s) in a row)`);
          send({
            name: "Tabgrid down", state: "firing", severity: "critical", at: now, startsAt: now, value: failed,
            message: `Tabgrid at ${o.url} is down: ${lastReason}`,
            description: `${failed} health probe(s) in a row failed (GET ${o.url}/api/health).`,
          });
        } else if (state !== "failing") {
          state = "failing";
          print("failing", { reason: lastReason, failures: failed }, `failing: ${o.url}: ${lastReason} (${failed} of ${o.failures} before down)`);
        }
      }
    }
    if (stopping) break;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, o.intervalMs);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  // Let notifications in flight finish (each is bounded by --timeout), then stop.
  await Promise.allSettled([...inflight]);
  if (!o.json) console.error("tabgrid watch: stopped");
  return 0;
}
