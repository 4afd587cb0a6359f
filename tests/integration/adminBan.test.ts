import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, createUserWithKey, type TestServer } from "../helpers/server";
import { RawVolunteer, trpc, trpcError } from "../helpers/clients";
import { hostKey } from "../../server/services/volunteers/reliability";
import { PROTOCOL_VERSION } from "../../worker/protocol/messages";

// The admin sees each volunteer's record and can ban and unban it; others cannot.
describe("admin bans", () => {
  let srv: TestServer;
  let admin: Awaited<ReturnType<typeof createUserWithKey>>;
  let user: Awaited<ReturnType<typeof createUserWithKey>>;

  beforeAll(async () => {
    srv = await startTestServer();
    admin = await createUserWithKey(srv.deps, "root@example.com"); // first account: admin
    user = await createUserWithKey(srv.deps, "someone@example.com");
  });
  afterAll(() => srv?.close());

  it("lists volunteers with records, bans one (closing its socket, refusing its hello) and unbans it", async () => {
    const v = await RawVolunteer.connect(srv.url);
    await v.request({ type: "hello", protocol: PROTOCOL_VERSION, ...v.identity, threads: 1, agent: "node", name: "target" }, "welcome");

    const list = await trpc(srv.url, admin.apiKey).admin.volunteers.query({ search: "target", limit: 10 });
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ id: v.identity.volunteerId, onlineThreads: 1, host: { valid: 0, invalid: 0, bannedUntil: null } });

    const denied = await trpcError(trpc(srv.url, user.apiKey).admin.ban.mutate({ id: hostKey(v.identity.volunteerId), hours: 1, reason: "x" }));
    expect(denied).toMatchObject({ code: "FORBIDDEN", httpStatus: 403 });
    expect(v.closed).toBeUndefined();

    const before = v.messages.length;
    await trpc(srv.url, admin.apiKey).admin.ban.mutate({ id: hostKey(v.identity.volunteerId), hours: 2, reason: "suspicious" });
    const error = await v.next("error", before);
    expect(error).toMatchObject({ code: "banned", message: expect.stringMatching(/suspicious/) });
    expect((await v.waitClosed()).code).toBe(1008);
    expect(srv.deps.coordinator.volunteers()).toHaveLength(0);

    const again = await RawVolunteer.connect(srv.url, { identity: v.identity });
    again.hello(1);
    expect((await again.next("error")).message).toMatch(/banned until .*suspicious/);
    await again.waitClosed();

    const banned = await trpc(srv.url, admin.apiKey).admin.volunteers.query({ search: v.identity.volunteerId, limit: 10 });
    expect(new Date(banned[0].host.bannedUntil!).getTime()).toBeGreaterThan(Date.now() + 3600_000);

    await trpc(srv.url, admin.apiKey).admin.unban.mutate({ id: hostKey(v.identity.volunteerId) });
    const back = await RawVolunteer.connect(srv.url, { identity: v.identity });
    await back.request({ type: "hello", protocol: PROTOCOL_VERSION, ...v.identity, threads: 1, agent: "node" }, "welcome");
    await back.close();
  });

  it("refuses a ban of something that is neither a host nor an account", async () => {
    const err = await trpcError(trpc(srv.url, admin.apiKey).admin.ban.mutate({ id: "job:whatever", hours: 1, reason: "x" }));
    expect(err).toMatchObject({ code: "BAD_REQUEST", message: expect.stringMatching(/host/) });
  });
});
