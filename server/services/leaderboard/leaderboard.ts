import { z } from "zod";
import type { Db } from "../../store/prisma";
import { userAccount } from "../credits/accounts";
import { browserHostName } from "../../../worker/client/hostName";

// Public leaderboards and a user's own history. Public rows carry no email: a host shows
// the name its owner gave it (masked if it looks like an email) or "anonymous <id prefix>",
// a team its name. See docs/pricing.md ("Leaderboards").

export const windowSchema = z.enum(["today", "week", "all"]);
export type LeaderboardWindow = z.infer<typeof windowSchema>;
export const rankBySchema = z.enum(["credits", "validated"]);
export type RankBy = z.infer<typeof rankBySchema>;

const DAY = 86_400_000;

/** today: since 00:00 UTC; week: the last 7 days (rolling); all: no bound. */
export function windowStart(window: LeaderboardWindow, now = new Date()): Date | undefined {
  if (window === "today") return new Date(Math.floor(now.getTime() / DAY) * DAY);
  if (window === "week") return new Date(now.getTime() - 7 * DAY);
  return undefined;
}

/** "alice@example.com" → "a•••", so a name typed as an email does not publish it. */
export function maskEmail(s: string): string {
  const at = s.indexOf("@");
  return at < 0 ? s : `${s.slice(0, Math.min(1, at))}•••`;
}

/** A host's name; rows written before hosts had names hold a user agent, shown as the name it makes. */
export function readableHostName(v: { id: string; name: string | null }) {
  if (!v.name) return `anonymous ${v.id.slice(0, 6)}`;
  return v.name.startsWith("Mozilla/") ? browserHostName(v.name, v.id) : v.name;
}

/** The name the public sees: an email typed as a name is masked. */
export function hostDisplayName(v: { id: string; name: string | null }) {
  return maskEmail(readableHostName(v));
}

interface Row { credits: number; validated: number }
const rank = <T extends Row>(rows: T[], by: RankBy, limit: number) =>
  rows
    .sort((a, b) => (by === "credits" ? b.credits - a.credits || b.validated - a.validated : b.validated - a.validated || b.credits - a.credits))
    .slice(0, limit)
    .map((r, i) => ({ rank: i + 1, ...r }));

/**
 * Hosts by credits earned (what their valid results were paid, the same amounts as the
 * ledger's payouts, written in the same transaction) and results validated, counted by the
 * time each result was received.
 */
export async function volunteerLeaderboard(db: Db, window: LeaderboardWindow, by: RankBy, limit = 50, now = new Date()) {
  const since = windowStart(window, now);
  const groups = await db.result.groupBy({
    by: ["volunteerId"],
    where: { state: "valid", ...(since ? { receivedAt: { gte: since } } : {}) },
    _sum: { paid: true },
    _count: { _all: true },
    orderBy: by === "credits" ? { _sum: { paid: "desc" } } : { _count: { volunteerId: "desc" } },
    take: limit,
  });
  const hosts = await db.volunteer.findMany({
    where: { id: { in: groups.map((g) => g.volunteerId) } },
    select: { id: true, name: true, user: { select: { team: { select: { id: true, name: true } } } } },
  });
  const byId = new Map(hosts.map((h) => [h.id, h]));
  return rank(groups.map((g) => {
    const h = byId.get(g.volunteerId);
    return {
      name: hostDisplayName(h ?? { id: g.volunteerId, name: null }),
      team: h?.user?.team ?? null,
      credits: g._sum.paid ?? 0,
      validated: g._count._all,
    };
  }), by, limit);
}

/**
 * Teams by the payouts credited to their members' accounts (ledger entries of kind
 * "payout") and the results validated on hosts their members own, in the window.
 */
export async function teamLeaderboard(db: Db, window: LeaderboardWindow, by: RankBy, limit = 50, now = new Date()) {
  const since = windowStart(window, now);
  const [teams, members] = await Promise.all([
    db.team.findMany({ select: { id: true, name: true, _count: { select: { members: true } } } }),
    db.user.findMany({ where: { teamId: { not: null } }, select: { id: true, teamId: true, volunteers: { select: { id: true } } } }),
  ]);
  const teamOfAccount = new Map(members.map((m) => [userAccount(m.id), m.teamId!]));
  const teamOfHost = new Map(members.flatMap((m) => m.volunteers.map((v) => [v.id, m.teamId!] as const)));
  const [paid, valid] = await Promise.all([
    db.ledgerEntry.groupBy({
      by: ["accountId"],
      where: { kind: "payout", amount: { gt: 0 }, accountId: { in: [...teamOfAccount.keys()] }, ...(since ? { createdAt: { gte: since } } : {}) },
      _sum: { amount: true },
    }),
    db.result.groupBy({
      by: ["volunteerId"],
      where: { state: "valid", volunteerId: { in: [...teamOfHost.keys()] }, ...(since ? { receivedAt: { gte: since } } : {}) },
      _count: { _all: true },
    }),
  ]);
  const rows = new Map(teams.map((t) => [t.id, { id: t.id, name: t.name, members: t._count.members, credits: 0, validated: 0 }]));
  for (const p of paid) rows.get(teamOfAccount.get(p.accountId)!)!.credits += p._sum.amount ?? 0;
  for (const v of valid) rows.get(teamOfHost.get(v.volunteerId)!)!.validated += v._count._all;
  return rank([...rows.values()].filter((r) => r.credits > 0 || r.validated > 0), by, limit);
}

export async function leaderboard(db: Db, window: LeaderboardWindow, by: RankBy, now = new Date()) {
  const [volunteers, teams] = await Promise.all([volunteerLeaderboard(db, window, by, 50, now), teamLeaderboard(db, window, by, 50, now)]);
  return { window, by, since: windowStart(window, now) ?? null, volunteers, teams };
}

/** A user's payouts per UTC day over the last `days` days (zeros included) and their hosts' records. */
export async function userHistory(db: Db, userId: string, days = 30, now = new Date()) {
  const first = Math.floor(now.getTime() / DAY) * DAY - (days - 1) * DAY;
  const [entries, hosts] = await Promise.all([
    db.ledgerEntry.findMany({
      where: { accountId: userAccount(userId), kind: "payout", amount: { gt: 0 }, createdAt: { gte: new Date(first) } },
      select: { amount: true, createdAt: true },
    }),
    db.volunteer.findMany({ where: { userId }, select: { id: true, name: true, benchmarkScore: true, lastSeenAt: true } }),
  ]);
  const perDay = Array.from({ length: days }, (_, i) => ({ day: new Date(first + i * DAY).toISOString().slice(0, 10), credits: 0 }));
  for (const e of entries) perDay[Math.floor((e.createdAt.getTime() - first) / DAY)].credits += e.amount;
  const ids = hosts.map((h) => h.id);
  const [all, recent] = await Promise.all([
    db.result.groupBy({ by: ["volunteerId"], where: { state: "valid", volunteerId: { in: ids } }, _count: { _all: true }, _sum: { paid: true } }),
    db.result.groupBy({ by: ["volunteerId"], where: { state: "valid", volunteerId: { in: ids }, receivedAt: { gte: new Date(first) } }, _count: { _all: true } }),
  ]);
  return {
    days: perDay,
    total: perDay.reduce((s, d) => s + d.credits, 0),
    hosts: hosts.map((h) => ({
      id: h.id, name: hostDisplayName(h), benchmarkScore: h.benchmarkScore, lastSeenAt: h.lastSeenAt,
      validated: all.find((g) => g.volunteerId === h.id)?._count._all ?? 0,
      validatedRecent: recent.find((g) => g.volunteerId === h.id)?._count._all ?? 0,
      earned: all.find((g) => g.volunteerId === h.id)?._sum.paid ?? 0,
    })),
  };
}
