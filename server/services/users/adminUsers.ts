import type { Db } from "../../store/prisma";
import { containsAnyCase } from "../../store/prisma";
import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { balanceOf, postTransaction } from "../credits/ledger";
import { fromCredits, SYSTEM_GRANTS, userAccount } from "../credits/accounts";
import { emailSchema } from "./users";

/** Accounts, newest first, searchable by email or id, each with its balance (millicredits), for the admin. */
export async function listUsers(deps: Pick<AppDeps, "db">, opts: { search?: string; limit: number }) {
  const search = opts.search?.trim();
  const like = search ? containsAnyCase(deps.db, search) : undefined;
  const users = await deps.db.user.findMany({
    where: like ? { OR: [{ email: like }, { id: like }] } : {},
    select: { id: true, email: true, role: true, createdAt: true },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: opts.limit,
  });
  const accounts = await deps.db.account.findMany({ where: { id: { in: users.map((u) => userAccount(u.id)) } }, select: { id: true, balance: true } });
  const balance = new Map(accounts.map((a) => [a.id, a.balance]));
  return users.map((u) => ({ ...u, balance: balance.get(userAccount(u.id)) ?? 0 }));
}

/** The most credits one grant may give: a slip of a few zeros should not mint millions. */
export const MAX_GRANT_CREDITS = 1_000_000;

/**
 * Credits an admin gives an account (by id or email), out of the system's grants account: a
 * `grant` in the ledger with the memo, which the account's owner sees on /account.
 */
export async function grantCredits(db: Db, to: { userId: string } | { email: string }, credits: number, memo: string) {
  if (!Number.isFinite(credits) || credits < 0.001 || credits > MAX_GRANT_CREDITS) {
    throw new UserError("BAD_REQUEST", `A grant is from 0.001 to ${MAX_GRANT_CREDITS.toLocaleString("en")} credits.`);
  }
  const text = memo.trim();
  if (!text || text.length > 200) throw new UserError("BAD_REQUEST", "Say what the grant is for, in 1 to 200 characters.");
  const where = "userId" in to ? { id: to.userId } : { email: emailSchema.parse(to.email) };
  const user = await db.user.findUnique({ where, select: { id: true, email: true } });
  if (!user) throw new UserError("NOT_FOUND", `No account ${"userId" in to ? to.userId : to.email}.`);
  const amount = fromCredits(credits);
  await db.$transaction((tx) => postTransaction(tx, "grant", [
    { accountId: SYSTEM_GRANTS, amount: -amount },
    { accountId: userAccount(user.id), amount },
  ], { memo: text }));
  return { userId: user.id, email: user.email, granted: amount, balance: await balanceOf(db, userAccount(user.id)) };
}
