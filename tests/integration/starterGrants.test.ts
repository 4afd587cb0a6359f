import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { balanceOf } from "../../server/services/credits/ledger";
import { MILLI, userAccount } from "../../server/services/credits/accounts";
import { addressKey } from "../../server/coordinator/network";
import { trpc } from "../helpers/clients";
import { startTestServer, type TestServer } from "../helpers/server";

// Sign-up stays open, but the starter grant goes to the first STARTER_GRANTS_PER_ADDRESS
// sign-ups a day from one address: a script signing up accounts in a loop collected 100
// credits each, without limit. Addresses come from X-Forwarded-For here (TRUST_PROXY=1).

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ STARTER_GRANTS_PER_ADDRESS: "2", TRUST_PROXY: "1" });
});
afterAll(() => srv?.close());

const from = (address: string) => trpc(srv.url, undefined, { "x-forwarded-for": address });

describe("starter grants", () => {
  it("go to the first sign-ups a day from an address; later ones get an account at 0 credits; another address still gets its own", async () => {
    const starter = srv.deps.env.STARTER_CREDITS;
    const signUp = (address: string, i: number) => from(address).account.signUp.mutate({ email: `user-${address.replace(/[^0-9a-f]/g, "-")}-${i}@example.com`, password: "long enough password" });
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await signUp("203.0.113.7", i));
    expect(answers.map((a) => a.starterCredits)).toEqual([starter, starter, 0, 0]);
    const balances = await Promise.all(answers.map((a) => balanceOf(srv.deps.db, userAccount(a.id))));
    expect(balances).toEqual([starter * MILLI, starter * MILLI, 0, 0]);
    // Every sign-up made an account (the first ever is the admin).
    expect(answers.map((a) => a.role)).toEqual(["admin", "user", "user", "user"]);
    // Another address, and another /48 of IPv6, are counted apart; one /48 is one address.
    expect((await signUp("198.51.100.20", 0)).starterCredits).toBe(starter);
    expect((await signUp("2001:db8:1:1::5", 0)).starterCredits).toBe(starter);
    expect((await signUp("2001:db8:1:2::9", 0)).starterCredits).toBe(starter);
    expect((await signUp("2001:db8:1:ffff::1", 0)).starterCredits).toBe(0);
    expect((await signUp("2001:db8:2::1", 0)).starterCredits).toBe(starter);
    // A taken email is refused without using a grant: the address's second sign-up still gets one.
    await expect(from("192.0.2.1").account.signUp.mutate({ email: "user-203-0-113-7-0@example.com", password: "long enough password" })).rejects.toThrow(/already exists/);
    expect((await signUp("192.0.2.1", 0)).starterCredits).toBe(starter);
    expect((await signUp("192.0.2.1", 1)).starterCredits).toBe(starter);
  });

  it("counts IPv4 addresses one by one and IPv6 by /48", () => {
    expect(addressKey("203.0.113.7")).toBe("203.0.113.7");
    expect(addressKey("::ffff:203.0.113.7")).toBe("203.0.113.7");
    expect(addressKey("2001:db8:1:2::9")).toBe(addressKey("2001:db8:1:ffff::1"));
    expect(addressKey("2001:db8:1::")).not.toBe(addressKey("2001:db8:2::"));
  });
});
