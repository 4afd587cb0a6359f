import crypto from "node:crypto";
import { sqliteGate, type Db } from "../../store/prisma";
import { postTransaction, balanceOf } from "../credits/ledger";
import { anonAccount, userAccount } from "../credits/accounts";
import { UserError } from "../errors";

const sha256 = (s: string) => crypto.createHash("sha256").update(s).digest("hex");

/**
 * Checks a connecting volunteer's secret against its id (nobody may pose as another
 * volunteer to take its held credits), by a raw read: a burst of thousands of hellos must
 * not queue behind the query engine. The row itself (created on first sight, refreshed
 * after) is written by the caller through the group commit, off the event loop:
 * `volunteerRow` builds that write.
 */
export async function checkVolunteer(db: Db, v: { volunteerId: string; token: string }, pending?: Map<string, string>) {
  const tokenHash = sha256(v.token);
  const gate = await sqliteGate(db);
  const row = gate.read((conn) => gate.statement(conn, `SELECT "tokenHash" FROM "Volunteer" WHERE "id" = ?`).get(v.volunteerId)) as { tokenHash: string } | undefined;
  // A first hello still on its way to the database holds the id too.
  const known = row?.tokenHash ?? pending?.get(v.volunteerId);
  if (known !== undefined && !crypto.timingSafeEqual(Buffer.from(known), Buffer.from(tokenHash))) {
    throw new UserError("FORBIDDEN", "This volunteer id belongs to another client (wrong token). Start with a new id.");
  }
  return { tokenHash, existed: !!row };
}

export function volunteerRow(v: { volunteerId: string; userId: string | null; name?: string; benchmark?: number }, tokenHash: string) {
  return { id: v.volunteerId, tokenHash, userId: v.userId, name: v.name ?? null, benchmark: v.benchmark ?? null, at: new Date().toISOString() };
}

/** Moves credits a volunteer id earned while signed out to the user's account. */
export async function claimAnonymousCredits(db: Db, userId: string, volunteerId: string): Promise<number> {
  return db.$transaction(async (tx) => {
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

export async function volunteerSummary(db: Db, volunteerId: string) {
  const row = await db.volunteer.findUnique({ where: { id: volunteerId }, select: { tasksDone: true, earned: true, userId: true } });
  if (!row) return null;
  return { ...row, held: await balanceOf(db, anonAccount(volunteerId)) };
}
