import crypto from "node:crypto";
import type pg from "pg";
import { accountKind } from "../../services/credits/accounts";
import { balancedMoves, InsufficientCredits, type EntryKind, type Posting } from "../../services/credits/ledger";

/**
 * ledger.ts's postTransaction inside a PostgreSQL batch transaction (see batchPg.ts): one
 * balanced transaction whose debits of non-system accounts never overdraw them (the
 * guarded UPDATE takes the row's lock, so two writers cannot both spend one balance), with
 * credits and entries in one multi-row statement each.
 */
export async function postTransactionPg(
  c: pg.PoolClient,
  kind: EntryKind,
  postings: Posting[],
  opts: { jobId?: string; memo?: string },
  at: string,
): Promise<string> {
  const moves = balancedMoves(kind, postings).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const txId = crypto.randomUUID();
  const credits: Array<[string, number]> = [];
  for (const [accountId, amount] of moves) {
    if (amount < 0 && accountKind(accountId) !== "system") {
      await c.query(`INSERT INTO "Account" ("id", "kind", "createdAt") VALUES ($1, $2, $3) ON CONFLICT ("id") DO NOTHING`, [accountId, accountKind(accountId), at]);
      const { rowCount } = await c.query(`UPDATE "Account" SET "balance" = "balance" + $1 WHERE "id" = $2 AND "balance" >= $3`, [amount, accountId, -amount]);
      if (rowCount === 0) {
        const { rows } = await c.query<{ balance: number }>(`SELECT "balance" FROM "Account" WHERE "id" = $1`, [accountId]);
        throw new InsufficientCredits(-amount, rows[0]?.balance ?? 0);
      }
    } else credits.push([accountId, amount]);
  }
  // Credits (and system debits) in one upsert: a volunteer's account is created on its first payout.
  if (credits.length) {
    await c.query(`INSERT INTO "Account" ("id", "kind", "balance", "createdAt")
      SELECT v.id, v.kind, v.amount, $4::timestamp FROM unnest($1::text[], $2::text[], $3::int8[]) AS v(id, kind, amount)
      ON CONFLICT ("id") DO UPDATE SET "balance" = "Account"."balance" + excluded."balance"`,
    [credits.map((m) => m[0]), credits.map((m) => accountKind(m[0])), credits.map((m) => m[1]), at]);
  }
  await c.query(`INSERT INTO "LedgerEntry" ("txId", "accountId", "amount", "kind", "jobId", "memo", "createdAt")
    SELECT $1, v.account, v.amount, $4, $5, $6, $7::timestamp FROM unnest($2::text[], $3::int8[]) AS v(account, amount)`,
  [txId, moves.map((m) => m[0]), moves.map((m) => m[1]), kind, opts.jobId ?? null, opts.memo ?? null, at]);
  return txId;
}
