import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrisma, type Db } from "../../server/store/prisma";
import { auditLedger, InsufficientCredits, postTransaction, balanceOf } from "../../server/services/credits/ledger";
import { SYSTEM_GRANTS, anonAccount, escrowAccount, userAccount } from "../../server/services/credits/accounts";
import { freshDatabase, skipFsync, type TestDatabase } from "../helpers/testDb";

// The ledger on a real database: random operations keep the books balanced, and a refused
// debit changes nothing.
describe("credit ledger", () => {
  let db: Db;
  let fresh: TestDatabase;

  beforeAll(async () => {
    fresh = await freshDatabase("tabgrid-ledger-");
    db = createPrisma(fresh.databaseUrl);
    // Durability is not what this test is about; skipping fsync keeps a thousand commits fast.
    await skipFsync(fresh, db);
  });
  afterAll(async () => {
    await db?.$disconnect();
    await fresh?.remove();
  });

  it("rejects unbalanced transactions and non-integer amounts", async () => {
    await expect(postTransaction(db, "grant", [{ accountId: SYSTEM_GRANTS, amount: -5 }, { accountId: userAccount("u"), amount: 4 }])).rejects.toThrow(/unbalanced/);
    await expect(postTransaction(db, "grant", [{ accountId: SYSTEM_GRANTS, amount: -0.5 }, { accountId: userAccount("u"), amount: 0.5 }])).rejects.toThrow(/integers/);
    expect(await db.ledgerEntry.count()).toBe(0);
  });

  it("refuses an overdraft inside a transaction and rolls the whole transaction back", async () => {
    await postTransaction(db, "grant", [{ accountId: SYSTEM_GRANTS, amount: -1000 }, { accountId: userAccount("a"), amount: 1000 }]);
    const before = await db.ledgerEntry.count();
    await expect(
      db.$transaction(async (tx) => {
        await tx.job.count(); // other work in the same transaction
        await postTransaction(tx, "hold", [{ accountId: userAccount("a"), amount: -1001 }, { accountId: escrowAccount("j1"), amount: 1001 }]);
      }),
    ).rejects.toBeInstanceOf(InsufficientCredits);
    expect(await db.ledgerEntry.count()).toBe(before);
    expect(await balanceOf(db, userAccount("a"))).toBe(1000);
    expect(await balanceOf(db, escrowAccount("j1"))).toBe(0);
  });

  // PostgreSQL runs these side by side: every one finds the account missing and creates it.
  it("credits an account that does not exist yet from 20 transactions at once", async () => {
    const fresh = userAccount("racer");
    await Promise.all(Array.from({ length: 20 }, () =>
      db.$transaction((tx) => postTransaction(tx, "grant", [{ accountId: SYSTEM_GRANTS, amount: -100 }, { accountId: fresh, amount: 100 }]))));
    expect(await balanceOf(db, fresh)).toBe(2000);
    expect(await db.ledgerEntry.count({ where: { accountId: fresh } })).toBe(20);
    const { createdAt } = await db.account.findUniqueOrThrow({ where: { id: fresh } });
    expect(Math.abs(createdAt.getTime() - Date.now())).toBeLessThan(60_000);
    expect(await auditLedger(db)).toMatchObject({ ok: true, total: 0 });
  });

  it("stays balanced through 2,500 random grants, holds, payouts, refunds and claims", async () => {
    let seed = 42;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const users = ["u1", "u2", "u3", "u4"].map(userAccount);
    const anons = ["v1", "v2"].map(anonAccount);
    const escrows = ["j1", "j2", "j3"].map(escrowAccount);
    let refused = 0;
    for (let i = 0; i < 2500; i++) {
      const amount = 1 + rand(5000);
      const user = users[rand(users.length)];
      const escrow = escrows[rand(escrows.length)];
      const pick = rand(5);
      const postings =
        pick === 0 ? [{ accountId: SYSTEM_GRANTS, amount: -amount }, { accountId: user, amount }]
        : pick === 1 ? [{ accountId: user, amount: -amount }, { accountId: escrow, amount }]
        : pick === 2 ? [{ accountId: escrow, amount: -amount }, { accountId: rand(2) ? anons[rand(2)] : user, amount }]
        : pick === 3 ? [{ accountId: escrow, amount: -amount }, { accountId: user, amount }]
        : [{ accountId: anons[rand(2)], amount: -amount }, { accountId: user, amount }];
      try {
        await postTransaction(db, (["grant", "hold", "payout", "refund", "claim"] as const)[pick], postings);
      } catch (e) {
        expect(e).toBeInstanceOf(InsufficientCredits);
        refused++;
      }
    }
    const audit = await auditLedger(db);
    expect(audit).toMatchObject({ ok: true, total: 0, unbalancedTx: [], driftedAccounts: [], negativeAccounts: [] });
    expect(refused).toBeGreaterThan(0);
    const granted = -(await balanceOf(db, SYSTEM_GRANTS));
    const held = await db.account.aggregate({ where: { kind: { not: "system" } }, _sum: { balance: true } });
    expect(held._sum.balance).toBe(granted);
  });
});
