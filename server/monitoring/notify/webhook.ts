/**
 * Webhooks in two body formats: Slack-compatible incoming-webhook JSON (also accepted by
 * Mattermost, Rocket.Chat, Discord's /slack endpoint, …) and Alertmanager's webhook JSON
 * (version 4), so anything that consumes Alertmanager (PagerDuty/Opsgenie bridges, Grafana
 * OnCall, custom receivers) can consume Tabgrid's alerts.
 */
import crypto from "node:crypto";
import { describeNetworkError } from "./errors";
import { DEFAULT_NOTIFY_TIMEOUT_MS, type AlertNotice, type NotifyContext, type WebhookFormat } from "./types";

const EMOJI: Record<AlertNotice["state"], string> = { firing: "🔥", repeat: "🔁", resolved: "✅", test: "🧪" };
const STATE_WORD: Record<AlertNotice["state"], string> = { firing: "FIRING", repeat: "STILL FIRING", resolved: "RESOLVED", test: "TEST" };

/** Slack's mrkdwn reserves &, < and >. */
function escapeMrkdwn(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export interface SlackBody {
  text: string;
  blocks?: Array<Record<string, unknown>>;
}

export function slackBody(n: AlertNotice, ctx: Pick<NotifyContext, "instance" | "externalUrl">): SlackBody {
  const emoji = EMOJI[n.state];
  const word = STATE_WORD[n.state];
  const text = `${emoji} [${word}] ${n.name}: ${n.message}`;
  const context = [`severity: *${n.severity}*`, escapeMrkdwn(ctx.instance), new Date(n.at).toISOString()];
  if (ctx.externalUrl) context.push(`<${ctx.externalUrl}|open Tabgrid>`);
  const blocks: Array<Record<string, unknown>> = [
    { type: "section", text: { type: "mrkdwn", text: `${emoji} *${word}* · *${escapeMrkdwn(n.name)}*\n${escapeMrkdwn(n.message)}` } },
  ];
  if (n.description) blocks.push({ type: "section", text: { type: "mrkdwn", text: `_${escapeMrkdwn(n.description)}_` } });
  blocks.push({ type: "context", elements: [{ type: "mrkdwn", text: context.join(" · ") }] });
  return { text, blocks };
}

export interface AlertmanagerAlert {
  status: "firing" | "resolved";
  labels: { alertname: string; severity: string; instance: string };
  annotations: { summary: string; description: string };
  startsAt: string;
  endsAt: string;
  generatorURL: string;
  fingerprint: string;
}

export interface AlertmanagerBody {
  version: "4";
  groupKey: string;
  truncatedAlerts: number;
  status: "firing" | "resolved";
  receiver: string;
  groupLabels: { alertname: string };
  commonLabels: AlertmanagerAlert["labels"];
  commonAnnotations: AlertmanagerAlert["annotations"];
  externalURL: string;
  alerts: AlertmanagerAlert[];
}

/** Alertmanager's "not ended yet". */
const ZERO_TIME = "0001-01-01T00:00:00Z";

/**
 * Alertmanager webhook JSON with one alert. A reminder ("repeat") and a test are "firing"
 * (that is what Alertmanager resends); the fingerprint is stable per alert name and instance,
 * so receivers can match a "resolved" to its "firing".
 */
export function alertmanagerBody(n: AlertNotice, ctx: Pick<NotifyContext, "instance" | "externalUrl" | "receiver">): AlertmanagerBody {
  const status = n.state === "resolved" ? "resolved" : "firing";
  const labels = { alertname: n.name, severity: n.severity, instance: ctx.instance };
  const annotations = { summary: n.message, description: n.description || n.message };
  const fingerprint = crypto.createHash("sha256").update(`${labels.alertname}\0${labels.instance}`).digest("hex").slice(0, 16);
  const externalURL = ctx.externalUrl ?? "";
  return {
    version: "4",
    groupKey: `{}:{alertname=${JSON.stringify(labels.alertname)}}`,
    truncatedAlerts: 0,
    status,
    receiver: ctx.receiver ?? "tabgrid",
    groupLabels: { alertname: labels.alertname },
    commonLabels: labels,
    commonAnnotations: annotations,
    externalURL,
    alerts: [
      {
        status,
        labels,
        annotations,
        startsAt: new Date(n.startsAt ?? n.at).toISOString(),
        endsAt: status === "resolved" ? new Date(n.at).toISOString() : ZERO_TIME,
        generatorURL: externalURL ? `${externalURL.replace(/\/+$/, "")}/admin` : "",
        fingerprint,
      },
    ],
  };
}

export function webhookBody(format: WebhookFormat, n: AlertNotice, ctx: NotifyContext): SlackBody | AlertmanagerBody {
  return format === "alertmanager" ? alertmanagerBody(n, ctx) : slackBody(n, ctx);
}

/** POSTs JSON; a network failure, a timeout or a non-2xx answer is an Error with a readable message. */
export async function postJson(url: string, body: unknown, timeoutMs = DEFAULT_NOTIFY_TIMEOUT_MS): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "tabgrid-alerts" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      redirect: "follow",
    });
  } catch (e) {
    throw new Error(describeNetworkError(e, url, timeoutMs));
  }
  const text = await res.text().catch(() => "");
  if (!res.ok) {
    const host = new URL(url).host;
    const detail = text.trim().slice(0, 200);
    throw new Error(`${host} answered HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}${detail ? `: ${detail}` : ""}`);
  }
}

export function sendWebhook(target: { url: string; format: WebhookFormat }, n: AlertNotice, ctx: NotifyContext): Promise<void> {
  return postJson(target.url, webhookBody(target.format, n, ctx), ctx.timeoutMs);
}
