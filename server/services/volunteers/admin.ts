import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { emptyRecord, hostKey } from "./reliability";
import { anonAccount, userAccount } from "../credits/accounts";
import { readableHostName } from "../leaderboard/leaderboard";
import { containsAnyCase } from "../../store/prisma";

/** Volunteers with their reliability records and whether they are online, for the admin. */
export async function listVolunteers(deps: AppDeps, opts: { search?: string; limit: number }) {
  const search = opts.search?.trim();
  const like = search ? containsAnyCase(deps.db, search) : undefined;
  const rows = await deps.db.volunteer.findMany({
    where: like ? { OR: [{ id: like }, { name: like }, { user: { email: like } }] } : {},
    select: { id: true, name: true, userId: true, tasksDone: true, earned: true, lastSeenAt: true, user: { select: { email: true } } },
    orderBy: [{ lastSeenAt: "desc" }, { id: "asc" }],
    take: opts.limit,
  });
  const accountIds = rows.map((r) => (r.userId ? userAccount(r.userId) : anonAccount(r.id)));
  const records = await deps.db.reliability.findMany({ where: { id: { in: [...rows.map((r) => hostKey(r.id)), ...accountIds] } } });
  const byId = new Map(records.map((r) => [r.id, r]));
  // Online on any node of the cluster (this one alone without Redis).
  const online = new Map<string, number>();
  for (const node of await deps.presence.nodes()) {
    for (const c of node.volunteers) online.set(c.volunteerId, (online.get(c.volunteerId) ?? 0) + c.threads);
  }
  return rows.map((r, i) => {
    const host = byId.get(hostKey(r.id)) ?? { ...emptyRecord(hostKey(r.id)), updatedAt: null };
    const account = byId.get(accountIds[i]) ?? { ...emptyRecord(accountIds[i]), updatedAt: null };
    return {
      id: r.id, name: readableHostName(r), email: r.user?.email ?? null, tasksDone: r.tasksDone, earned: r.earned, lastSeenAt: r.lastSeenAt,
      onlineThreads: online.get(r.id) ?? 0,
      host: { ...host, avgTurnaroundMs: host.turnaroundCount ? host.turnaroundMsTotal / host.turnaroundCount : null },
      account,
    };
  });
}

/** Bans a host ("host:<id>") or an account for `hours`; its open sockets are closed at once. */
export async function banVolunteer(deps: AppDeps, input: { id: string; hours: number; reason: string }) {
  if (!/^(host|user|anon):/.test(input.id)) throw new UserError("BAD_REQUEST", "Ban a host (host:<volunteer id>) or an account (user:… or anon:…).");
  const until = new Date(Date.now() + input.hours * 3600_000);
  const reason = `${input.reason} (by an admin)`;
  await deps.coordinator.ban(input.id, until, reason);
  // Its sockets on the other nodes are closed too.
  deps.cluster.bus.publish("ban", { id: input.id, until: until.toISOString(), reason });
  return { id: input.id, until };
}

export async function unbanVolunteer(deps: AppDeps, id: string) {
  await deps.coordinator.unban(id);
  deps.cluster.bus.publish("unban", id);
  return { id };
}
