import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUserWithKey, newIdentity, runCli, startCliVolunteer, startTestServer, waitFor, type TestServer } from "../helpers/server";
import { RawVolunteer, trpc, trpcError } from "../helpers/clients";
import { browserHostName, cliHostName } from "../../worker/client/hostName";

const CHROME_LINUX = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

let srv: TestServer;
let alice: Awaited<ReturnType<typeof createUserWithKey>>;
let bob: Awaited<ReturnType<typeof createUserWithKey>>;

beforeAll(async () => {
  srv = await startTestServer();
  alice = await createUserWithKey(srv.deps, "alice@example.com");
  bob = await createUserWithKey(srv.deps, "bob@example.com");
}, 30_000);

afterAll(async () => {
  await srv?.close();
});

const row = (id: string) => srv.deps.db.volunteer.findUnique({ where: { id }, select: { name: true, nameChosen: true, userId: true } });

/** A browser tab's hello (as VolunteerProvider sends it), signed in as `apiKey`; resolves once welcomed. */
async function browserHello(identity: ReturnType<typeof newIdentity>, apiKey: string) {
  const v = await RawVolunteer.connect(srv.url, { identity, headers: { authorization: `Bearer ${apiKey}` } });
  const welcome = v.next("welcome");
  v.hello(1, { agent: "browser", name: browserHostName(CHROME_LINUX, identity.volunteerId) });
  await welcome;
  return v;
}

describe("host names", () => {
  it("a browser host is named after its browser, OS and id; its owner renames it and the next hello keeps that name", async () => {
    const identity = newIdentity();
    const short = identity.volunteerId.slice(0, 4);
    const tab = await browserHello(identity, alice.apiKey);
    expect(await row(identity.volunteerId)).toEqual({ name: `Chrome on Linux · ${short}`, nameChosen: false, userId: alice.user.id });

    const asAlice = trpc(srv.url, alice.apiKey);
    expect(await asAlice.account.hosts.query()).toEqual([
      expect.objectContaining({ id: identity.volunteerId, name: `Chrome on Linux · ${short}`, tasksDone: 0, earned: 0 }),
    ]);
    expect(await trpc(srv.url, bob.apiKey).account.hosts.query()).toEqual([]);

    // Someone else's host, or no one signed in: refused, nothing changes.
    const other = await trpcError(trpc(srv.url, bob.apiKey).account.renameHost.mutate({ volunteerId: identity.volunteerId, name: "mine now" }));
    expect(other).toMatchObject({ code: "NOT_FOUND", message: `You have no host ${identity.volunteerId}: only a host's owner may rename it.` });
    expect((await trpcError(trpc(srv.url).account.renameHost.mutate({ volunteerId: identity.volunteerId, name: "x" }))).code).toBe("UNAUTHORIZED");

    // Bad names: a clear reason, nothing changes.
    for (const [name, message] of [
      ["   ", "A host name cannot be empty."],
      ["x".repeat(61), "A host name is at most 60 characters."],
      ["two\nlines", "A host name cannot contain control characters."],
    ]) {
      expect(await trpcError(asAlice.account.renameHost.mutate({ volunteerId: identity.volunteerId, name }))).toMatchObject({ code: "BAD_REQUEST", message });
    }
    expect(await row(identity.volunteerId)).toMatchObject({ name: `Chrome on Linux · ${short}`, nameChosen: false });

    expect(await asAlice.account.renameHost.mutate({ volunteerId: identity.volunteerId, name: "  Kitchen laptop " })).toEqual({ id: identity.volunteerId, name: "Kitchen laptop" });
    expect(await row(identity.volunteerId)).toMatchObject({ name: "Kitchen laptop", nameChosen: true });

    // The tab reconnects and says its default name again: the owner's name stays.
    await tab.close();
    const again = await browserHello(identity, alice.apiKey);
    await again.close();
    expect(await row(identity.volunteerId)).toMatchObject({ name: "Kitchen laptop", nameChosen: true });
    expect((await asAlice.account.hosts.query())[0]).toMatchObject({ name: "Kitchen laptop" });
  }, 30_000);

  it("tabgrid volunteer names itself after its platform, --name sets the name (over one chosen on /account), a bad --name is refused", async () => {
    const plain = startCliVolunteer(srv.url, 1, { apiKey: alice.apiKey, name: null });
    try {
      await waitFor(async () => (await row(plain.identity.volunteerId))?.name, 20_000, "the CLI volunteer's row");
      expect(await row(plain.identity.volunteerId)).toMatchObject({ name: cliHostName(process.platform, plain.identity.volunteerId), nameChosen: false });
    } finally {
      await plain.stop();
    }

    // A host renamed on /account, then started with --name: the newest choice wins and stays chosen.
    const identity = newIdentity();
    await (await browserHello(identity, alice.apiKey)).close();
    await trpc(srv.url, alice.apiKey).account.renameHost.mutate({ volunteerId: identity.volunteerId, name: "old name" });
    const named = startCliVolunteer(srv.url, 1, { apiKey: alice.apiKey, identity, name: "lab-box-1" });
    try {
      await waitFor(async () => (await row(identity.volunteerId))?.name === "lab-box-1", 20_000, "the --name to reach the server");
      expect(await row(identity.volunteerId)).toMatchObject({ name: "lab-box-1", nameChosen: true });
      expect(named.output()).toContain('as "lab-box-1"');
    } finally {
      await named.stop();
    }
    await (await browserHello(identity, alice.apiKey)).close();
    expect(await row(identity.volunteerId)).toMatchObject({ name: "lab-box-1", nameChosen: true });

    const before = await srv.deps.db.volunteer.count();
    for (const [name, reason] of [["", "cannot be empty"], ["tab\there", "cannot contain control characters"], ["y".repeat(61), "is at most 60 characters"]]) {
      const bad = await runCli(["volunteer", "--url", srv.url, "--threads", "1", `--name=${name}`]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain(`tabgrid volunteer: --name: A host name ${reason}.`);
    }
    expect(await srv.deps.db.volunteer.count()).toBe(before);
  }, 60_000);
});
