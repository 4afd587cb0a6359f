import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { userForApiKey } from "../../server/auth/apiKeys";
import { sqliteGate } from "../../server/store/prisma";
import { createUserWithKey, startCliVolunteer, startTestServer, waitFor, type TestServer } from "../helpers/server";
import { RawVolunteer, trpc } from "../helpers/clients";
import { testEngine } from "../helpers/testDb";
import WebSocket from "ws";
import { TRPC_WS_PATH } from "../../server/app";

// A key's lastUsedAt is brought up to date at most once a minute, and a call in between
// writes nothing: not even a write that changes nothing, which would wait for the database's
// write lock behind the commit in progress on every API call.
describe("API key use", () => {
  let srv: TestServer;
  let key: string;
  let keyId: string;
  const lastUsed = async () => (await srv.deps.db.apiKey.findUniqueOrThrow({ where: { id: keyId } })).lastUsedAt;
  const setLastUsed = (at: Date | null) => srv.deps.db.apiKey.update({ where: { id: keyId }, data: { lastUsedAt: at } });

  beforeAll(async () => {
    srv = await startTestServer();
    const alice = await createUserWithKey(srv.deps, "alice@example.com");
    key = alice.apiKey;
    keyId = (await srv.deps.db.apiKey.findFirstOrThrow({ where: { userId: alice.user.id } })).id;
  }, 40_000);
  afterAll(async () => srv?.close());

  it("records the first use, and again only once the last is a minute old", async () => {
    await setLastUsed(null);
    const before = Date.now();
    expect((await userForApiKey(srv.deps.db, key))?.email).toBe("alice@example.com");
    expect((await lastUsed())!.getTime()).toBeGreaterThanOrEqual(before - 1000);

    const recent = new Date(Date.now() - 30_000);
    await setLastUsed(recent);
    await userForApiKey(srv.deps.db, key);
    expect(await lastUsed()).toEqual(recent);

    await setLastUsed(new Date(Date.now() - 61_000));
    const at = Date.now();
    await userForApiKey(srv.deps.db, key);
    expect((await lastUsed())!.getTime()).toBeGreaterThanOrEqual(at - 1000);
  });

  it.skipIf(testEngine() !== "sqlite")("answers while the write lock is held, when there is nothing to record", async () => {
    await setLastUsed(new Date());
    const gate = await sqliteGate(srv.deps.db);
    let answered = false;
    await gate.writeLock.runExclusive(async () => {
      const call = userForApiKey(srv.deps.db, key).then((u) => (answered = !!u));
      await Promise.race([call, new Promise((r) => setTimeout(r, 3000))]);
    });
    expect(answered).toBe(true);
  });

  it("reads the user's role as it stands at each call", async () => {
    const userId = (await srv.deps.db.apiKey.findUniqueOrThrow({ where: { id: keyId } })).userId;
    await srv.deps.db.user.update({ where: { id: userId }, data: { role: "admin" } });
    expect(await userForApiKey(srv.deps.db, key)).toEqual({ id: userId, email: "alice@example.com", role: "admin" });
    await srv.deps.db.user.update({ where: { id: userId }, data: { role: "user" } });
    expect((await userForApiKey(srv.deps.db, key))?.role).toBe("user");
  });

  it("knows no revoked or made-up key", async () => {
    expect(await userForApiKey(srv.deps.db, "tg_" + "x".repeat(43))).toBeNull();
    expect(await userForApiKey(srv.deps.db, "not a key")).toBeNull();
    await srv.deps.db.apiKey.update({ where: { id: keyId }, data: { revokedAt: new Date() } });
    expect(await userForApiKey(srv.deps.db, key)).toBeNull();
  });
});

// A volunteer socket's key was checked at the upgrade only: one opened with a key kept earning
// for the account after the key was revoked.
describe("revoking an API key", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer();
  }, 40_000);
  afterAll(async () => srv?.close());

  it("closes the volunteer sockets signed in with it, and only those; the key opens no other", async () => {
    const bob = await createUserWithKey(srv.deps, "bob@example.com");
    const api = trpc(srv.url, bob.apiKey);
    const spare = await api.account.createApiKey.mutate({ name: "laptop" });
    const connect = async (key: string) => {
      const v = await RawVolunteer.connect(srv.url, { headers: { authorization: `Bearer ${key}` } });
      v.hello(2);
      await v.next("welcome");
      return v;
    };
    const [a, b, other] = [await connect(spare.key), await connect(spare.key), await connect(bob.apiKey)];
    expect(srv.deps.coordinator.volunteers().filter((v) => v.userId === bob.user.id)).toHaveLength(3);

    expect(await api.account.revokeApiKey.mutate({ id: spare.id })).toBe(true);
    for (const v of [a, b]) {
      expect(await v.waitClosed()).toEqual({ code: 1008, reason: "API key revoked" });
      expect(v.messages.at(-1)).toMatchObject({ type: "error", code: "key-revoked" });
    }
    await waitFor(() => srv.deps.coordinator.volunteers().length === 1, 5000, "the revoked key's volunteers to leave");
    expect(srv.deps.coordinator.volunteers()[0].volunteerId).toBe(other.identity.volunteerId);
    expect(other.closed).toBeUndefined();
    await expect(RawVolunteer.connect(srv.url, { headers: { authorization: `Bearer ${spare.key}` } })).rejects.toThrow(/401/);
    await other.close();
  });

  it("closes a page's socket (tRPC's, for live updates) opened with it: no new subscription streams on a revoked key", async () => {
    const dave = await createUserWithKey(srv.deps, "dave@example.com");
    const key = await trpc(srv.url, dave.apiKey).account.createApiKey.mutate({ name: "page" });
    const { id } = await trpc(srv.url, key.key).jobs.submit.mutate({ kernel: "pi", chunks: 2, params: { samples: 2000 }, replication: { replicas: 1, adaptive: false } });
    const ws = new WebSocket(`${srv.url.replace(/^http/, "ws")}${TRPC_WS_PATH}`, { headers: { authorization: `Bearer ${key.key}` } });
    const frames: Array<{ id?: number; result?: { type?: string } }> = [];
    ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
    await new Promise<void>((resolve, reject) => (ws.once("open", () => resolve()), ws.once("error", reject)));
    ws.send(JSON.stringify({ id: 1, method: "subscription", params: { path: "jobs.watch", input: { id } } }));
    await waitFor(() => frames.some((f) => f.id === 1 && f.result?.type === "data"), 5000, "the job's live snapshot");
    await trpc(srv.url, dave.apiKey).account.revokeApiKey.mutate({ id: key.id });
    expect(await closed).toEqual({ code: 1008, reason: "API key revoked" });
  });

  it("ends a CLI volunteer started with it, saying why (exit status 1)", async () => {
    const carol = await createUserWithKey(srv.deps, "carol@example.com");
    const key = await trpc(srv.url, carol.apiKey).account.createApiKey.mutate({ name: "box" });
    const cli = startCliVolunteer(srv.url, 1, { dir: srv.dir, apiKey: key.key });
    try {
      await waitFor(() => srv.deps.coordinator.volunteers().some((v) => v.userId === carol.user.id), 30_000, "the CLI volunteer");
      await trpc(srv.url, carol.apiKey).account.revokeApiKey.mutate({ id: key.id });
      await cli.exited;
      expect(cli.exitCode).toBe(1);
      expect(cli.output()).toContain("The API key this volunteer signed in with was revoked");
    } finally {
      await cli.stop();
    }
  }, 60_000);
});

