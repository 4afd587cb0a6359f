import type { AppDeps } from "../deps";
import type { MarkReadInput } from "./schemas";

/** Admins' in-app notifications, newest first, a page at a time. They are shared by all admins. */
export async function listNotifications(deps: AppDeps, input: { unreadOnly: boolean; cursor?: number; limit: number }) {
  const items = await deps.db.notification.findMany({
    where: { ...(input.unreadOnly ? { readAt: null } : {}), ...(input.cursor ? { id: { lt: input.cursor } } : {}) },
    select: { id: true, title: true, body: true, severity: true, at: true, readAt: true },
    orderBy: { id: "desc" },
    take: input.limit + 1,
  });
  const more = items.length > input.limit;
  const page = more ? items.slice(0, input.limit) : items;
  return { items: page, nextCursor: more ? page[page.length - 1].id : null };
}

export async function markNotificationsRead(deps: AppDeps, input: MarkReadInput) {
  const where = "ids" in input ? { id: { in: input.ids }, readAt: null } : { readAt: null };
  const { count } = await deps.db.notification.updateMany({ where, data: { readAt: new Date() } });
  return { updated: count };
}

export async function unreadNotificationCount(deps: AppDeps) {
  return { count: await deps.db.notification.count({ where: { readAt: null } }) };
}
