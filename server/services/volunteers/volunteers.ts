import crypto from "node:crypto";
import type { Db } from "../../store/prisma";
import { hotStore } from "../../store/hotStore";
import { postTransaction, balanceOf } from "../credits/ledger";
import { anonAccount, userAccount } from "../credits/accounts";
import { UserError } from "../errors";
import { helloHostName, hostNameSchema } from "../../../worker/client/hostName";
import { readableHostName } from "../leaderboard/leaderboard";

const sha256 = (s: string) => crypto.createHash("sha256").update(s).digest("hex");

/** A hello with a known volunteer id and another token. */
export const WRONG_TOKEN = "This volunteer id belongs to another client (wrong token). Start with a new id.";

/**
 * Checks a connecting volunteer's secret against its id (nobody may pose as another
 * volunteer to take its held credits), by a raw read: a burst of thousands of hellos must
 * not queue behind the query engine. The row itself (created on first sight, refreshed
 * after) is written by the caller through the group commit, off the event loop:
 * `volunteerRow` builds that write.
 */
export async function checkVolunteer(db: Db, v: { volunteerId: string; token: string }, pending?: Map<string, string>) {
  const tokenHash = sha256(v.token);
  const stored = await hotStore(db).volunteerTokenHash(v.volunteerId);
  // A first hello still on its way to the database holds the id too.
  const known = stored ?? pending?.get(v.volunteerId);
  if (known !== undefined && !crypto.timingSafeEqual(Buffer.from(known), Buffer.from(tokenHash))) {
    throw new UserError("FORBIDDEN", WRONG_TOKEN);
  }
  return { tokenHash, existed: stored !== undefined };
}

/**
 * A default name (from what the host is) never replaces a name its owner chose on /account
 * or with `--name` (the row's `nameChosen`, kept by the upsert in batchSql.ts).
 */
export function volunteerRow(
  v: { volunteerId: string; userId: string | null; agent?: "browser" | "node"; name?: string; nameChosen?: boolean; benchmark?: number },
  tokenHash: string,
) {
  const name = helloHostName(v);
  const nameChosen = !!v.nameChosen && name === v.name?.trim();
  return { id: v.volunteerId, tokenHash, userId: v.userId, name, nameChosen, benchmark: v.benchmark ?? null, at: new Date().toISOString() };
}

/**
 * Moves credits a volunteer id earned while signed out to the user's account. Two hellos of
 * one volunteer (two tabs, two nodes) may claim at once: each first locks the anon account's
 * row with a no-op write (PostgreSQL's row lock; SQLite's one writer), then reads its balance
 * under that lock, so the second sees what the first left (nothing) instead of failing its debit.
 */
export async function claimAnonymousCredits(db: Db, userId: string, volunteerId: string): Promise<number> {
  return db.$transaction(async (tx) => {
    const { count } = await tx.account.updateMany({ where: { id: anonAccount(volunteerId) }, data: { balance: { increment: 0 } } });
    if (count === 0) return 0;
    const held = await balanceOf(tx, anonAccount(volunteerId));
    if (held <= 0) return 0;
    await postTransaction(tx, "claim", [
      { accountId: anonAccount(volunteerId), amount: -held },
      { accountId: userAccount(userId), amount: held },
    ], { memo: `claimed from volunteer ${volunteerId}` });
    return held;
  });
}

/** Claim with the volunteer's secret (the volunteer page does this after signing in). */
export async function claimVolunteer(db: Db, userId: string, volunteerId: string, token: string) {
  const row = await db.volunteer.findUnique({ where: { id: volunteerId }, select: { tokenHash: true } });
  if (!row || !crypto.timingSafeEqual(Buffer.from(row.tokenHash), Buffer.from(sha256(token)))) {
    throw new UserError("FORBIDDEN", "Unknown volunteer id or wrong token.");
  }
  await db.volunteer.update({ where: { id: volunteerId }, data: { userId }, select: { id: true } });
  return claimAnonymousCredits(db, userId, volunteerId);
}

/**
 * What a volunteer id holds, for anyone who knows it (the volunteer page, signed out). Whether
 * an account owns it, not which: a calculation's answer names the volunteer that computed it,
 * and this named its owner's user id to any caller.
 */
export async function volunteerSummary(db: Db, volunteerId: string) {
  const row = await db.volunteer.findUnique({ where: { id: volunteerId }, select: { tasksDone: true, earned: true, userId: true } });
  if (!row) return null;
  return { tasksDone: row.tasksDone, earned: row.earned, claimed: row.userId !== null, held: await balanceOf(db, anonAccount(volunteerId)) };
}

/** The signed-in user's hosts, most recently seen first. */
export async function userHosts(db: Db, userId: string) {
  const rows = await db.volunteer.findMany({
    where: { userId },
    select: { id: true, name: true, nameChosen: true, tasksDone: true, earned: true, benchmarkScore: true, lastSeenAt: true },
    orderBy: [{ lastSeenAt: "desc" }, { id: "asc" }],
    take: 200,
  });
  return rows.map((r) => ({ ...r, name: readableHostName(r) }));
}

/**
 * Renames one of the user's hosts. The name is theirs from then on: the host's next hello
 * does not replace it with its default name (only `tabgrid volunteer --name` does).
 */
export async function renameHost(db: Db, userId: string, volunteerId: string, rawName: string) {
  const parsed = hostNameSchema.safeParse(rawName);
  if (!parsed.success) throw new UserError("BAD_REQUEST", parsed.error.issues[0].message);
  const { count } = await db.volunteer.updateMany({ where: { id: volunteerId, userId }, data: { name: parsed.data, nameChosen: true } });
  if (count === 0) throw new UserError("NOT_FOUND", `You have no host ${volunteerId}: only a host's owner may rename it.`);
  return { id: volunteerId, name: parsed.data };
}
