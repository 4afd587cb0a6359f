import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrisma, type Db } from "../../server/store/prisma";
import { createUser } from "../../server/services/users/users";
import { auditLedger, balanceOf, postTransaction } from "../../server/services/credits/ledger";
import { SYSTEM_GRANTS, anonAccount, userAccount } from "../../server/services/credits/accounts";
import { claimAnonymousCredits } from "../../server/services/volunteers/volunteers";
import { freshDatabase, type TestDatabase } from "../helpers/testDb";

// Accounts on a real database of either engine. SQLite runs one write transaction at a time;
// PostgreSQL runs sign-ups side by side, so "the first account becomes admin" must hold there too.
describe("creating accounts", () => {
  let fresh: TestDatabase;
  let db: Db;

  beforeAll(async () => {
    fresh = await freshDatabase("tabgrid-users-");
    db = createPrisma(fresh.databaseUrl);
    // What prisma/seed.ts does after every migration.
    await db.account.create({ data: { id: SYSTEM_GRANTS, kind: "system" } });
  });
  afterAll(async () => {
    await db?.$disconnect();
    await fresh?.remove();
  });

  it("makes exactly one admin of accounts created at the same moment on a fresh install", async () => {
    const users = await Promise.all(
      Array.from({ length: 6 }, (_, i) => createUser(db, { email: `racer-${i}@example.com`, password: "correct horse battery" }, 100_000)),
    );
    expect(users.filter((u) => u.role === "admin")).toHaveLength(1);
    expect(await db.user.count({ where: { role: "admin" } })).toBe(1);
    expect(await auditLedger(db)).toMatchObject({ ok: true, total: 0 });
  });

  it("refuses a taken email, in any case, with the reason", async () => {
    await createUser(db, { email: "taken@example.com", password: "correct horse battery" }, 0);
    await expect(createUser(db, { email: "Taken@Example.com", password: "another password" }, 0)).rejects.toThrow(/already exists/);
  });

  // Two tabs (or two nodes) of one volunteer say hello at once: each claims what the id holds.
  it("moves a volunteer's anonymous credits to the user exactly once from 20 claims at once", async () => {
    const user = await createUser(db, { email: "claimer@example.com", password: "correct horse battery" }, 0);
    const anon = anonAccount("two-tabs");
    await postTransaction(db, "grant", [{ accountId: SYSTEM_GRANTS, amount: -7000 }, { accountId: anon, amount: 7000 }]);
    const moved = await Promise.all(Array.from({ length: 20 }, () => claimAnonymousCredits(db, user.id, "two-tabs")));
    expect(moved.filter((m) => m > 0)).toEqual([7000]);
    expect(await balanceOf(db, anon)).toBe(0);
    expect(await balanceOf(db, userAccount(user.id))).toBe(7000);
    expect(await db.ledgerEntry.count({ where: { kind: "claim" } })).toBe(2);
    expect(await auditLedger(db)).toMatchObject({ ok: true, total: 0 });
  });
});
