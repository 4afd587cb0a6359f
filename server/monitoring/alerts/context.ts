import os from "node:os";
import type { AppDeps } from "../../services/deps";
import type { NotifyContext } from "../notify";

/** The `instance` of the server's notices: PUBLIC_URL's host when set, else the machine's name. */
export function serverInstance(env: AppDeps["env"]): string {
  try {
    if (env.PUBLIC_URL) return new URL(env.PUBLIC_URL).host;
  } catch {}
  return os.hostname();
}

/** How the server delivers: SMTP and sender from the environment, in-app into its database. */
export function serverNotifyContext(deps: AppDeps, opts: { instance?: string; timeoutMs?: number } = {}): NotifyContext {
  return {
    db: deps.db,
    smtpUrl: deps.env.SMTP_URL,
    emailFrom: deps.env.ALERT_EMAIL_FROM,
    instance: opts.instance ?? serverInstance(deps.env),
    externalUrl: deps.env.PUBLIC_URL ?? "",
    receiver: "tabgrid",
    timeoutMs: opts.timeoutMs,
  };
}
