import type { Db } from "../../store/prisma";
import type { AlertNotice } from "./types";

const TITLE_WORD: Record<AlertNotice["state"], string> = { firing: "Firing", repeat: "Still firing", resolved: "Resolved", test: "Test" };

/** An unread Notification row for the admins' bell. Resolves and tests are "info". */
export async function sendInApp(db: Db, n: AlertNotice): Promise<void> {
  const severity = n.state === "firing" || n.state === "repeat" ? n.severity : "info";
  await db.notification.create({
    data: { title: `${TITLE_WORD[n.state]}: ${n.name}`, body: n.message, severity, at: new Date(n.at) },
    select: { id: true },
  });
}
