import { z } from "zod";
import type { Db } from "../../store/prisma";
import { UserError } from "../errors";
import { FORBIDDEN_IN_NAMES } from "../../../worker/client/hostName";

/**
 * The team `userId` was in before a move, deleted if nobody is left in it: one account that
 * created team after team left hundreds of empty ones behind, and they pushed real teams out
 * of the list.
 */
async function leftBehind(db: Db, previous: string | null | undefined, now: string | null) {
  if (previous && previous !== now) await db.team.deleteMany({ where: { id: previous, members: { none: {} } } });
}

const teamOf = async (db: Db, userId: string) => (await db.user.findUnique({ where: { id: userId }, select: { teamId: true } }))?.teamId;

export const teamNameSchema = z.string().trim().min(2, "A team name has at least 2 characters.").max(40, "At most 40 characters.")
  .refine((s) => !FORBIDDEN_IN_NAMES.test(s), "A team name cannot contain control, zero-width or direction-changing characters.");

/** Teams with members (a team left empty is deleted, see leftBehind), by name. */
export async function listTeams(db: Db) {
  const teams = await db.team.findMany({
    where: { members: { some: {} } }, orderBy: { name: "asc" }, take: 500, select: { id: true, name: true, _count: { select: { members: true } } },
  });
  return teams.map((t) => ({ id: t.id, name: t.name, members: t._count.members }));
}

export async function myTeam(db: Db, userId: string) {
  const u = await db.user.findUnique({ where: { id: userId }, select: { team: { select: { id: true, name: true } } } });
  return u?.team ?? null;
}

/** Creates a team and puts its creator in it (leaving any team they were in). */
export async function createTeam(db: Db, userId: string, name: string) {
  if (await db.team.findUnique({ where: { name }, select: { id: true } })) throw new UserError("CONFLICT", `A team named "${name}" exists: join it instead.`);
  const previous = await teamOf(db, userId);
  const team = await db.team.create({ data: { name, members: { connect: { id: userId } } }, select: { id: true, name: true } });
  await leftBehind(db, previous, team.id);
  return team;
}

export async function joinTeam(db: Db, userId: string, teamId: string) {
  const team = await db.team.findUnique({ where: { id: teamId }, select: { id: true, name: true } });
  if (!team) throw new UserError("NOT_FOUND", "No such team.");
  const previous = await teamOf(db, userId);
  await db.user.update({ where: { id: userId }, data: { teamId }, select: { id: true } });
  await leftBehind(db, previous, teamId);
  return team;
}

export async function leaveTeam(db: Db, userId: string) {
  const previous = await teamOf(db, userId);
  await db.user.update({ where: { id: userId }, data: { teamId: null }, select: { id: true } });
  await leftBehind(db, previous, null);
  return null;
}
