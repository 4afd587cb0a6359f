import crypto from "node:crypto";
import type { Prisma } from "../../../generated/prisma/client";
import type { Database as Conn } from "better-sqlite3";
import { accountKind } from "./accounts";
import { sqlTime, type SqliteGate } from "../../store/sqliteGate";

/** A Prisma client or an open transaction: ledger writes compose into the caller's transaction. */
export type Tx = Prisma.TransactionClient;

/** reversal: credits paid for results later proved wrong, taken back (see jobs/backtrackSql.ts). */
export type EntryKind = "grant" | "hold" | "payout" | "refund" | "claim" | "ad" | "reversal";

export interface Posting {
  accountId: string;
  amount: number;
}

export class InsufficientCredits extends Error {
  constructor(public readonly needed: number, public readonly available: number) {
    super(`Not enough credits: this needs ${needed / 1000} credit${needed === 1000 ? "" : "s"} and the balance is ${available / 1000}.`);
    this.name = "InsufficientCredits";
  }
}

/**
 * Posts one balanced transaction: the amounts sum to zero, each entry is a row, and each
 * account's cached balance moves in the same database transaction. Only system accounts
 * may go negative; a debit that would overdraw any other account throws InsufficientCredits
 * and, because the caller's transaction rolls back, changes nothing.
 */
export async function postTransaction(
  tx: Tx,
  kind: EntryKind,
  postings: Posting[],
  opts: { jobId?: string; memo?: string } = {},
): Promise<string> {
  const moves = balancedMoves(kind, postings);
  const txId = crypto.randomUUID();
  for (const [accountId, amount] of moves) {
    // Not Prisma's upsert, which may select then insert: two transactions crediting a new
    // account side by side (PostgreSQL) would both insert, and the second fail on the key.
    await tx.$executeRaw`INSERT INTO "Account" ("id", "kind", "createdAt") VALUES (${accountId}, ${accountKind(accountId)}, ${new Date()}) ON CONFLICT ("id") DO NOTHING`;
    if (amount < 0 && accountKind(accountId) !== "system") {
      const { count } = await tx.account.updateMany({
        where: { id: accountId, balance: { gte: -amount } },
        data: { balance: { increment: amount } },
      });
      if (count === 0) {
        const acc = await tx.account.findUnique({ where: { id: accountId }, select: { balance: true } });
        throw new InsufficientCredits(-amount, acc?.balance ?? 0);
      }
    } else {
      await tx.account.update({ where: { id: accountId }, data: { balance: { increment: amount } } });
    }
  }
  await tx.ledgerEntry.createMany({
    data: moves.map(([accountId, amount]) => ({ txId, accountId, amount, kind, jobId: opts.jobId, memo: opts.memo })),
  });
  return txId;
}

/**
 * The same posting inside the group commit's synchronous write transaction (see
 * store/sqliteGate.ts), where a payout may credit a thousand volunteers at once: accounts,
 * balances and entries go in multi-row statements.
 */
export function postTransactionSync(
  gate: SqliteGate,
  conn: Conn,
  kind: EntryKind,
  postings: Posting[],
  opts: { jobId?: string; memo?: string } = {},
): string {
  const moves = balancedMoves(kind, postings);
  const txId = crypto.randomUUID();
  const at = sqlTime(new Date());
  const credits: unknown[][] = [];
  for (const [accountId, amount] of moves) {
    if (amount < 0 && accountKind(accountId) !== "system") {
      gate.statement(conn, `INSERT INTO "Account" ("id", "kind", "createdAt") VALUES (?, ?, ?) ON CONFLICT ("id") DO NOTHING`).run(accountId, accountKind(accountId), at);
      const { changes } = gate.statement(conn, `UPDATE "Account" SET "balance" = "balance" + ? WHERE "id" = ? AND "balance" >= ?`).run(amount, accountId, -amount);
      if (changes === 0) {
        const acc = gate.statement(conn, `SELECT "balance" FROM "Account" WHERE "id" = ?`).get(accountId) as { balance: number } | undefined;
        throw new InsufficientCredits(-amount, acc?.balance ?? 0);
      }
    } else credits.push([accountId, accountKind(accountId), amount, at]);
  }
  // Credits (and system debits) in one upsert: a volunteer's account is created on its first payout.
  if (credits.length) {
    gate.bulk(conn, `INSERT INTO "Account" ("id", "kind", "balance", "createdAt") VALUES {values}
      ON CONFLICT ("id") DO UPDATE SET "balance" = "balance" + excluded."balance"`, credits);
  }
  gate.bulk(conn, `INSERT INTO "LedgerEntry" ("txId", "accountId", "amount", "kind", "jobId", "memo", "createdAt") VALUES {values}`,
    moves.map(([accountId, amount]) => [txId, accountId, amount, kind, opts.jobId ?? null, opts.memo ?? null, at]));
  return txId;
}

/** Merges postings by account and checks they balance; drops zero moves. */
export function balancedMoves(kind: EntryKind, postings: Posting[]): Array<[string, number]> {
  const merged = new Map<string, number>();
  for (const p of postings) {
    if (!Number.isSafeInteger(p.amount)) throw new Error(`ledger amounts are integers (got ${p.amount})`);
    merged.set(p.accountId, (merged.get(p.accountId) ?? 0) + p.amount);
  }
  let sum = 0;
  for (const amount of merged.values()) sum += amount;
  if (sum !== 0) throw new Error(`unbalanced ${kind} transaction (sum ${sum})`);
  return [...merged].filter(([, amount]) => amount !== 0);
}

export async function balanceOf(tx: Tx, accountId: string): Promise<number> {
  const acc = await tx.account.findUnique({ where: { id: accountId }, select: { balance: true } });
  return acc?.balance ?? 0;
}

export interface LedgerAudit {
  ok: boolean;
  /** Sum of every account's balance: zero when the books balance (grants are negative). */
  total: number;
  unbalancedTx: string[];
  driftedAccounts: string[];
  negativeAccounts: string[];
}

/** Checks the double-entry invariants over the whole ledger. */
export async function auditLedger(tx: Tx): Promise<LedgerAudit> {
  const accounts = await tx.account.findMany({ select: { id: true, kind: true, balance: true } });
  const sums = await tx.ledgerEntry.groupBy({ by: ["accountId"], _sum: { amount: true } });
  const txSums = await tx.ledgerEntry.groupBy({ by: ["txId"], _sum: { amount: true } });
  const byAccount = new Map(sums.map((s) => [s.accountId, s._sum.amount ?? 0]));
  const total = accounts.reduce((s, a) => s + a.balance, 0);
  const unbalancedTx = txSums.filter((t) => (t._sum.amount ?? 0) !== 0).map((t) => t.txId);
  const driftedAccounts = accounts.filter((a) => (byAccount.get(a.id) ?? 0) !== a.balance).map((a) => a.id);
  const negativeAccounts = accounts.filter((a) => a.kind !== "system" && a.balance < 0).map((a) => a.id);
  return {
    ok: total === 0 && !unbalancedTx.length && !driftedAccounts.length && !negativeAccounts.length,
    total,
    unbalancedTx,
    driftedAccounts,
    negativeAccounts,
  };
}
