import type nodemailer from "nodemailer";
import { DEFAULT_NOTIFY_TIMEOUT_MS, type AlertNotice, type NotifyContext } from "./types";

const SUBJECT_WORD: Record<AlertNotice["state"], string> = { firing: "FIRING", repeat: "STILL FIRING", resolved: "RESOLVED", test: "TEST" };

export function emailContent(n: AlertNotice, ctx: Pick<NotifyContext, "instance" | "externalUrl">) {
  const subject = n.state === "test"
    ? `[Tabgrid] Test notification from ${ctx.instance}`
    : `[Tabgrid] ${SUBJECT_WORD[n.state]}: ${n.name}${n.state === "resolved" ? "" : ` (${n.severity})`}`;
  const lines = [
    n.message,
    "",
    ...(n.description ? [n.description, ""] : []),
    `Alert:    ${n.name}`,
    `State:    ${n.state}`,
    `Severity: ${n.severity}`,
    `Instance: ${ctx.instance}`,
    `At:       ${new Date(n.at).toISOString()}`,
    ...(n.startsAt && n.startsAt !== n.at ? [`Since:    ${new Date(n.startsAt).toISOString()}`] : []),
    ...(ctx.externalUrl ? ["", `${ctx.externalUrl.replace(/\/+$/, "")}/admin`] : []),
  ];
  return { subject, text: lines.join("\n") + "\n" };
}

/**
 * Sends over SMTP with a transport built from the URL (smtp://user:pass@host:587, smtps://… for
 * TLS from the start; STARTTLS is used when the server offers it). Query parameters of the
 * URL are nodemailer options (e.g. ?tls.rejectUnauthorized=false for a self-signed relay).
 */
export async function sendEmail(to: string[], n: AlertNotice, ctx: NotifyContext): Promise<void> {
  if (!ctx.smtpUrl) throw new Error("email is not configured: set SMTP_URL (e.g. smtp://user:pass@mail.example.com:587)");
  if (to.length === 0) throw new Error("no email recipient");
  const timeout = ctx.timeoutMs ?? DEFAULT_NOTIFY_TIMEOUT_MS;
  // Loaded when mail is sent, not with the server: ~13 MB a server without SMTP never needs.
  const [{ default: mailer }, { default: SMTPTransport }] = await Promise.all([import("nodemailer"), import("nodemailer/lib/smtp-transport")]);
  let transport: nodemailer.Transporter;
  try {
    // An SMTPTransport instance, because createTransport({ url, … }) drops every option but the URL.
    transport = mailer.createTransport(
      new SMTPTransport({ url: ctx.smtpUrl, connectionTimeout: timeout, greetingTimeout: timeout, socketTimeout: timeout }),
    );
  } catch (e) {
    throw new Error(`bad SMTP_URL: ${(e as Error).message}`);
  }
  const { subject, text } = emailContent(n, ctx);
  try {
    await transport.sendMail({ from: ctx.emailFrom, to, subject, text });
  } catch (e) {
    const err = e as { code?: string; message?: string };
    throw new Error(`email to ${to.join(", ")} failed: ${err.message ?? String(e)}`);
  } finally {
    transport.close();
  }
}
