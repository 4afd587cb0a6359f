import type { Db } from "../../store/prisma";
import { balanceOf } from "./ledger";

/** An account's balance and its latest ledger entries, newest first. */
export async function statement(db: Db, accountId: string, opts: { limit: number; before?: number }) {
  const [balance, entries] = await Promise.all([
    balanceOf(db, accountId),
    db.ledgerEntry.findMany({
      where: { accountId, ...(opts.before ? { id: { lt: opts.before } } : {}) },
      select: { id: true, amount: true, kind: true, jobId: true, memo: true, createdAt: true },
      orderBy: { id: "desc" },
      take: opts.limit,
    }),
  ]);
  return { balance, entries };
}
