import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditLedger } from "../../server/services/credits/ledger";
import { createUserWithKey, runCli, startTestServer, type TestServer } from "../helpers/server";
import { trpc, trpcError } from "../helpers/clients";

// An admin gives an account credits (from the system's grants, a `grant` with a memo in the
// account's ledger), from the admin API or `tabgrid admin grant` on the database. Anything
// else, a user calling it or a bad amount, memo or account, is refused and moves nothing.
describe("credit grants by an admin", () => {
  let srv: TestServer;
  let admin: Awaited<ReturnType<typeof createUserWithKey>>;
  let user: Awaited<ReturnType<typeof createUserWithKey>>;

  beforeAll(async () => {
    srv = await startTestServer();
    admin = await createUserWithKey(srv.deps, "root@example.com"); // the first account: admin
    user = await createUserWithKey(srv.deps, "Trainer@Example.com");
  });
  afterAll(() => srv?.close());

  const books = async () => ({ entries: await srv.deps.db.ledgerEntry.count(), balance: await trpc(srv.url, user.apiKey).account.balance.query() });

  it("adds credits with a memo to the account's ledger from the admin API, and lists accounts with balances", async () => {
    const before = await books();
    const g = await trpc(srv.url, admin.apiKey).admin.grant.mutate({ userId: user.user.id, credits: 400.5, memo: " training runs " });
    expect(g).toMatchObject({ userId: user.user.id, email: "trainer@example.com", granted: 400_500, balance: before.balance + 400_500 });
    const { entries } = await trpc(srv.url, user.apiKey).account.ledger.query({ limit: 1 });
    expect(entries[0]).toMatchObject({ kind: "grant", amount: 400_500, memo: "training runs" });
    expect((await auditLedger(srv.deps.db)).ok).toBe(true);

    const listed = await trpc(srv.url, admin.apiKey).admin.users.query({ search: "TRAINER", limit: 10 });
    expect(listed).toEqual([expect.objectContaining({ id: user.user.id, email: "trainer@example.com", role: "user", balance: before.balance + 400_500 })]);
  });

  it("refuses a user, bad amounts, an empty memo and an unknown account, and moves nothing", async () => {
    const before = await books();
    const asUser = trpc(srv.url, user.apiKey).admin;
    expect(await trpcError(asUser.grant.mutate({ userId: user.user.id, credits: 1000, memo: "to myself" }))).toMatchObject({ code: "FORBIDDEN" });
    expect(await trpcError(asUser.users.query())).toMatchObject({ code: "FORBIDDEN" });
    const api = trpc(srv.url, admin.apiKey).admin;
    for (const credits of [0, -5, 0.0001, 1e300, 2_000_000, Number.NaN]) {
      const e = await trpcError(api.grant.mutate({ userId: user.user.id, credits, memo: "x" }));
      expect(e.code, String(credits)).toBe("BAD_REQUEST");
    }
    expect(await trpcError(api.grant.mutate({ userId: user.user.id, credits: 5, memo: "   " }))).toMatchObject({ code: "BAD_REQUEST", message: expect.stringMatching(/what the grant is for/) });
    expect(await trpcError(api.grant.mutate({ userId: "no-such-user", credits: 5, memo: "x" }))).toMatchObject({ code: "NOT_FOUND" });
    expect(await books()).toEqual(before);
  });

  it("grants from the CLI on the database, and refuses what is not an amount", async () => {
    const before = await books();
    const env = { DATABASE_URL: srv.databaseUrl };
    const ok = await runCli(["admin", "grant", "--email", "trainer@example.com", "--credits", "250", "--memo", "a course", "--json"], env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ userId: user.user.id, email: "trainer@example.com", granted: 250, balance: (before.balance + 250_000) / 1000 });
    for (const [credits, message] of [["1e300", /--credits must be a number of credits/], ["-1", /--credits must be a number/], ["5000000", /from 0.001 to 1,000,000 credits/]] as const) {
      const bad = await runCli(["admin", "grant", "--email", "trainer@example.com", "--credits", credits], env);
      expect(bad.code, credits).not.toBe(0);
      expect(bad.stderr).toMatch(message);
    }
    const nobody = await runCli(["admin", "grant", "--email", "nobody@example.com", "--credits", "5"], env);
    expect(nobody.stderr).toMatch(/No account nobody@example.com/);
    expect(await books()).toEqual({ entries: before.entries + 2, balance: before.balance + 250_000 });
  });
});
