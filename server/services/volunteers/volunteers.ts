import crypto from "node:crypto";
import type { Db } from "../../store/prisma";
import { postTransaction, balanceOf } from "../credits/ledger";
import { anonAccount, userAccount } from "../credits/accounts";
import { UserError } from "../errors";

const sha256 = (s: string) => crypto.createHash("sha256").update(s).digest("hex");

/**
 * Records a volunteer id on first sight and checks its secret afterwards, so nobody can
 * pose as another volunteer to take its held credits. A signed-in connection links the id
 * to the account and moves any credits it earned anonymously there.
 */
export async function registerVolunteer(
  db: Db,
  v: { volunteerId: string; token: string; userId: string | null; name?: string; benchmark?: number },
) {
  const tokenHash = sha256(v.token);
  const existing = await db.volunteer.findUnique({ where: { id: v.volunteerId }, select: { tokenHash: true, userId: true } });
  if (!existing) {
    await db.volunteer.create({ data: { id: v.volunteerId, tokenHash, userId: v.userId, name: v.name, benchmarkScore: v.benchmark ?? 1 } });
    return;
  }
  if (!crypto.timingSafeEqual(Buffer.from(existing.tokenHash), Buffer.from(tokenHash))) {
    throw new UserError("FORBIDDEN", "This volunteer id belongs to another client (wrong token). Start with a new id.");
  }
  await db.volunteer.update({
    where: { id: v.volunteerId },
    data: { lastSeenAt: new Date(), ...(v.userId ? { userId: v.userId } : {}), ...(v.name ? { name: v.name } : {}), ...(v.benchmark ? { benchmarkScore: v.benchmark } : {}) },
    select: { id: true },
  });
  if (v.userId) await claimAnonymousCredits(db, v.userId, v.volunteerId);
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
