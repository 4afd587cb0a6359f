import type { AppDeps } from "../deps";

/** The alert history, newest first, a page at a time: pass `nextCursor` back as `cursor`. */
export async function listEvents(deps: AppDeps, input: { ruleId?: string; cursor?: number; limit: number }) {
  const items = await deps.db.alertEvent.findMany({
    where: { ...(input.ruleId ? { ruleId: input.ruleId } : {}), ...(input.cursor ? { id: { lt: input.cursor } } : {}) },
    select: { id: true, ruleId: true, name: true, state: true, value: true, message: true, at: true },
    orderBy: { id: "desc" },
    take: input.limit + 1,
  });
  const more = items.length > input.limit;
  const page = more ? items.slice(0, input.limit) : items;
  return { items: page, nextCursor: more ? page[page.length - 1].id : null };
}
