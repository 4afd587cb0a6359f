/**
 * NotificationChannel.config is JSON: webhook { url, format: "slack" | "alertmanager" },
 * email { to }. These schemas validate it on the way in (the API) and on the way out (the
 * manager), so a hand-edited row can't crash delivery.
 */
import { z } from "zod";
import type { ChannelTarget } from "./types";

export const webhookUrl = z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }).max(2000);
export const emailAddress = z.email({ error: "must be an email address" }).max(254);

export const webhookConfig = z.object({
  url: webhookUrl,
  format: z.enum(["slack", "alertmanager"]).default("slack"),
});
export const emailConfig = z.object({ to: emailAddress });

export type WebhookConfig = z.infer<typeof webhookConfig>;
export type EmailConfig = z.infer<typeof emailConfig>;

export function parseChannelConfig(row: { name: string; kind: string; config: string }): ChannelTarget | null {
  let json: unknown;
  try {
    json = JSON.parse(row.config);
  } catch {
    return null;
  }
  if (row.kind === "webhook") {
    const c = webhookConfig.safeParse(json);
    return c.success ? { kind: "webhook", name: row.name, url: c.data.url, format: c.data.format } : null;
  }
  if (row.kind === "email") {
    const c = emailConfig.safeParse(json);
    return c.success ? { kind: "email", name: row.name, to: [c.data.to] } : null;
  }
  return null;
}
