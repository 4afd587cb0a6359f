import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { balanceOf } from "../../server/services/credits/ledger";
import { MILLI, userAccount } from "../../server/services/credits/accounts";
import type { IncomingMessage } from "node:http";
import { addressKey } from "../../server/coordinator/network";
import { clientIp } from "../../server/api/trpc";
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

  it("takes the address the proxy appended, not one the client wrote before it", async () => {
    // nginx's $proxy_add_x_forwarded_for keeps the client's own header and appends the address
    // it saw: a made-up first entry on each sign-up used to get a grant every time.
    const answers = [];
    for (let i = 0; i < 3; i++) {
      const forged = `198.18.${i}.${i + 1}`;
      answers.push(await trpc(srv.url, undefined, { "x-forwarded-for": `${forged}, 203.0.113.99` }).account.signUp.mutate({ email: `forged-${i}@example.com`, password: "long enough password" }));
    }
    expect(answers.map((a) => a.starterCredits)).toEqual([srv.deps.env.STARTER_CREDITS, srv.deps.env.STARTER_CREDITS, 0]);
  });

  it("reads the client's address behind N proxies, and the socket's without a usable one", () => {
    const req = (xff: string | undefined, remoteAddress = "::ffff:10.0.0.1") => ({ headers: xff === undefined ? {} : { "x-forwarded-for": xff }, socket: { remoteAddress } }) as unknown as IncomingMessage;
    expect(clientIp(req("1.2.3.4, 203.0.113.7"), 0)).toBe("10.0.0.1");
    expect(clientIp(req("1.2.3.4, 203.0.113.7"), 1)).toBe("203.0.113.7");
    expect(clientIp(req("1.2.3.4, 203.0.113.7, 10.0.0.2"), 2)).toBe("203.0.113.7");
    expect(clientIp(req("203.0.113.7"), 2)).toBe("203.0.113.7");
    expect(clientIp(req("::ffff:203.0.113.8"), 1)).toBe("203.0.113.8");
    expect(clientIp(req("1.2.3.4, not-an-address"), 1)).toBe("10.0.0.1");
    expect(clientIp(req(undefined), 1)).toBe("10.0.0.1");
  });

  it("counts IPv4 addresses one by one and IPv6 by /48", () => {
    expect(addressKey("203.0.113.7")).toBe("203.0.113.7");
    expect(addressKey("::ffff:203.0.113.7")).toBe("203.0.113.7");
    expect(addressKey("2001:db8:1:2::9")).toBe(addressKey("2001:db8:1:ffff::1"));
    expect(addressKey("2001:db8:1::")).not.toBe(addressKey("2001:db8:2::"));
  });
});
