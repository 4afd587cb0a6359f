import type { Db } from "../../store/prisma";

/** What every notifier sends: an alert event of the server, or of the watchdog CLI. */
export interface AlertNotice {
  /** The alert's name (a rule name, "Tabgrid down", …): Alertmanager's `alertname`. */
  name: string;
  state: "firing" | "resolved" | "repeat" | "test";
  severity: "warning" | "critical" | "info";
  /** One readable line: "Free disk is 4.2% of the data volume (below 10% for 60 s)". */
  message: string;
  /** Longer text: what the alert means (a rule's description). */
  description?: string;
  value?: number | null;
  /** When it happened, ms since the epoch. */
  at: number;
  /** When the alert started firing, ms since the epoch (defaults to `at`). */
  startsAt?: number;
}

export type WebhookFormat = "slack" | "alertmanager";

/** Where a notice goes. Server channels come from NotificationChannel rows; the CLI builds them from flags. */
export type ChannelTarget =
  | { kind: "webhook"; name?: string; url: string; format: WebhookFormat }
  | { kind: "email"; name?: string; to: string[] }
  | { kind: "inapp" };

export interface NotifyContext {
  /** Needed for in-app notifications only (the server has one, the CLI doesn't). */
  db?: Db;
  /** smtp://user:pass@host:587 or smtps://…; email channels fail with a clear message without it. */
  smtpUrl?: string;
  emailFrom: string;
  /** Where the notice comes from: a host name or URL, shown in messages and as the `instance` label. */
  instance: string;
  /** Link back to the admin UI (Alertmanager's externalURL); "" when unknown. */
  externalUrl?: string;
  /** Alertmanager's `receiver` field. */
  receiver?: string;
  /** Per delivery: webhook request or SMTP connection/greeting/socket timeouts. */
  timeoutMs?: number;
}

export const DEFAULT_NOTIFY_TIMEOUT_MS = 10_000;

export function describeTarget(t: ChannelTarget): string {
  switch (t.kind) {
    case "webhook": {
      // Webhook URLs often carry a secret in their path (Slack's do): logs name the host only.
      let host = t.url;
      try {
        host = new URL(t.url).host;
      } catch {}
      return `${t.name ? `"${t.name}" ` : ""}webhook (${t.format}) to ${host}`;
    }
    case "email":
      return `${t.name ? `"${t.name}" ` : ""}email to ${t.to.join(", ")}`;
    case "inapp":
      return "in-app notification";
  }
}
