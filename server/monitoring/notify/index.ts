/**
 * The one way to deliver an alert: `notify(channel, notice, ctx)`. Used by the server's alert
 * manager (channels from NotificationChannel rows, plus in-app) and by `tabgrid watch`
 * (channels from its flags; it has no database, so no in-app). Rejects with a readable
 * Error; callers decide whether to log, retry or report it.
 */
import { sendEmail } from "./email";
import { sendInApp } from "./inapp";
import { sendWebhook } from "./webhook";
import type { AlertNotice, ChannelTarget, NotifyContext } from "./types";

export type { AlertNotice, ChannelTarget, NotifyContext, WebhookFormat } from "./types";
export { describeTarget, DEFAULT_NOTIFY_TIMEOUT_MS } from "./types";
export { slackBody, alertmanagerBody } from "./webhook";
export { emailContent } from "./email";
export { describeNetworkError } from "./errors";

export async function notify(channel: ChannelTarget, notice: AlertNotice, ctx: NotifyContext): Promise<void> {
  switch (channel.kind) {
    case "webhook":
      return sendWebhook(channel, notice, ctx);
    case "email":
      return sendEmail(channel.to, notice, ctx);
    case "inapp":
      if (!ctx.db) throw new Error("in-app notifications need the server's database");
      return sendInApp(ctx.db, notice);
  }
}
