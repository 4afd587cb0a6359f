import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTRPCClient, httpLink } from "@trpc/client";
import type { AppRouter } from "../../server/api/root";
import { createUserWithKey, sleep, startTestServer, type TestServer } from "../helpers/server";
import { trpc, trpcError } from "../helpers/clients";
import { auditLedger, balanceOf } from "../../server/services/credits/ledger";
import { userAccount } from "../../server/services/credits/accounts";

let n = 0;
async function newUser(server: TestServer) {
  const u = await createUserWithKey(server.deps, `ads${++n}@example.com`);
  return { ...u, api: trpc(server.url, u.apiKey) };
}
type Api = ReturnType<typeof trpc>;

/** Watches `ms` of visible time with real heartbeats, one per 500 ms. */
async function watch(api: Api, sessionId: string, ms: number, visible = true) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    await sleep(Math.min(500, end - Date.now() + 20));
    last = await api.ads.heartbeat.mutate({ sessionId, visible });
  }
  return last!;
}

describe("watch an ad for credits", () => {
  let server: TestServer;
  let vast: http.Server;
  let vastUrl: string;

  beforeAll(async () => {
    server = await startTestServer({ ADS_DEFAULT_SECONDS: "2", ADS_DEFAULT_REWARD_CREDITS: "1.5", ADS_DAILY_CAP_PER_ACCOUNT: "50", ADS_DAILY_CAP_PER_IP: "100" });
    vast = http.createServer((req, res) => {
      const base = `http://127.0.0.1:${(vast.address() as { port: number }).port}`;
      if (req.url === "/vast.xml") {
        res.writeHead(200, { "content-type": "application/xml" });
        res.end(`<?xml version="1.0" encoding="UTF-8"?>
<VAST version="4.0">
  <Ad id="ad-1">
    <InLine>
      <AdSystem>local test</AdSystem>
      <AdTitle>Local VAST ad</AdTitle>
      <Impression><![CDATA[${base}/impression]]></Impression>
      <Creatives>
        <Creative id="c1">
          <Linear>
            <Duration>00:00:07.000</Duration>
            <MediaFiles>
              <MediaFile delivery="progressive" type="video/mp4" width="640" height="360"><![CDATA[${base}/ad.mp4]]></MediaFile>
            </MediaFiles>
            <VideoClicks><ClickThrough><![CDATA[https://example.com/landing]]></ClickThrough></VideoClicks>
          </Linear>
        </Creative>
      </Creatives>
    </InLine>
  </Ad>
</VAST>`);
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((r) => vast.listen(0, "127.0.0.1", r));
    vastUrl = `http://127.0.0.1:${(vast.address() as { port: number }).port}/vast.xml`;
  });

  afterAll(async () => {
    await server?.close();
    await new Promise((r) => vast?.close(r));
  });

  it("seeds a default house ad whose media is served with its type", async () => {
    const creatives = await server.deps.db.adCreative.findMany();
    expect(creatives).toHaveLength(1);
    expect(creatives[0]).toMatchObject({ kind: "image", mimeType: "image/svg+xml", durationSeconds: 2, reward: 1500, active: true });
    const res = await fetch(`${server.url}/api/ads/media/${creatives[0].mediaHash}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/svg+xml");
    expect(await res.text()).toContain("Tabgrid");
  });

  it("pays a watched ad exactly once, with a ledger entry of kind ad", async () => {
    const { user, api } = await newUser(server);
    const before = await balanceOf(server.deps.db, userAccount(user.id));
    const started = await api.ads.start.mutate();
    expect(started).toMatchObject({ reward: 1500, requiredSeconds: 2, creative: { kind: "image", mimeType: "image/svg+xml", durationSeconds: 2 } });
    expect(started.creative.mediaUrl).toMatch(/^\/api\/ads\/media\/[0-9a-f]{64}$/);

    // Early: refused with the remaining time.
    const early = await trpcError(api.ads.claim.mutate({ sessionId: started.sessionId }));
    expect(early.code).toBe("BAD_REQUEST");
    expect(early.message).toMatch(/\d+ s of the ad still to watch/);

    const beat = await watch(api, started.sessionId, 2100);
    expect(beat.remainingSeconds).toBe(0);
    const paid = await api.ads.claim.mutate({ sessionId: started.sessionId });
    expect(paid.reward).toBe(1500);
    expect(paid.balance).toBe(before + 1500);

    // Twice: refused, and nothing more is paid.
    const twice = await trpcError(api.ads.claim.mutate({ sessionId: started.sessionId }));
    expect(twice.code).toBe("CONFLICT");
    expect(twice.message).toMatch(/already claimed/);
    // Concurrent double claims on a fresh session pay once too.
    const s2 = await api.ads.start.mutate();
    await watch(api, s2.sessionId, 2100);
    const results = await Promise.allSettled([api.ads.claim.mutate({ sessionId: s2.sessionId }), api.ads.claim.mutate({ sessionId: s2.sessionId })]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);

    expect(await balanceOf(server.deps.db, userAccount(user.id))).toBe(before + 3000);
    const entries = await server.deps.db.ledgerEntry.findMany({ where: { accountId: userAccount(user.id), kind: "ad" } });
    expect(entries.map((e) => e.amount)).toEqual([1500, 1500]);
    const creative = await server.deps.db.adCreative.findFirstOrThrow();
    expect(creative.claims).toBeGreaterThanOrEqual(2);
    expect(creative.views).toBeGreaterThanOrEqual(2);
    expect((await auditLedger(server.deps.db)).ok).toBe(true);
  });

  it("refuses a claim before the wall-clock time has passed, whatever the heartbeats say", async () => {
    const { api } = await newUser(server);
    const started = performance.now();
    const s = await api.ads.start.mutate();
    // Rapid-fire beats: each credits only the real time since the previous one, so all of them
    // never more than the time that passed (however slow the machine running the test).
    for (let i = 0; i < 20; i++) await api.ads.heartbeat.mutate({ sessionId: s.sessionId, visible: true });
    const elapsed = performance.now() - started;
    const row = await server.deps.db.adSession.findUniqueOrThrow({ where: { id: s.sessionId } });
    expect(row.watchedMs).toBeLessThanOrEqual(Math.ceil(elapsed));
    const e = await trpcError(api.ads.claim.mutate({ sessionId: s.sessionId }));
    expect(e.message).toMatch(/still to watch/);
    await api.ads.cancel.mutate({ sessionId: s.sessionId });
  });

  it("does not count time while the tab is hidden or unfocused", async () => {
    const { api } = await newUser(server);
    const s = await api.ads.start.mutate();
    const beat = await watch(api, s.sessionId, 2300, false);
    expect(beat.watchedMs).toBe(0);
    expect(beat.remainingSeconds).toBe(2);
    const e = await trpcError(api.ads.claim.mutate({ sessionId: s.sessionId }));
    expect(e.code).toBe("BAD_REQUEST");
    expect(e.message).toMatch(/2 s of the ad still to watch/);
  });

  it("refuses a second session while the first is alive (two tabs)", async () => {
    const { user, api } = await newUser(server);
    const first = await api.ads.start.mutate();
    const e = await trpcError(api.ads.start.mutate());
    expect(e.code).toBe("CONFLICT");
    expect(e.message).toMatch(/already watching an ad \(in another tab\?\)/);
    // Racing starts: only one session stays open.
    await api.ads.cancel.mutate({ sessionId: first.sessionId });
    await Promise.allSettled(Array.from({ length: 6 }, () => api.ads.start.mutate()));
    expect(await server.deps.db.adSession.count({ where: { userId: user.id, state: "open" } })).toBe(1);
    // A session that went quiet is abandoned by the next start, and can't be claimed.
    const open = await server.deps.db.adSession.findFirstOrThrow({ where: { userId: user.id, state: "open" } });
    await server.deps.db.adSession.update({ where: { id: open.id }, data: { lastBeatAt: new Date(Date.now() - 60_000), openedAt: new Date(Date.now() - 60_000), watchedMs: 5000 } });
    await api.ads.start.mutate();
    const stale = await trpcError(api.ads.claim.mutate({ sessionId: open.id }));
    expect(stale.code).toBe("CONFLICT");
    expect(stale.message).toMatch(/closed/);
  });

  it("refuses another user's session", async () => {
    const a = await newUser(server);
    const b = await newUser(server);
    const s = await a.api.ads.start.mutate();
    expect((await trpcError(b.api.ads.heartbeat.mutate({ sessionId: s.sessionId, visible: true }))).code).toBe("NOT_FOUND");
    expect((await trpcError(b.api.ads.claim.mutate({ sessionId: s.sessionId }))).code).toBe("NOT_FOUND");
    await a.api.ads.cancel.mutate({ sessionId: s.sessionId });
  });

  it("never serves an inactive creative, and parses and plays a VAST creative", async () => {
    const admin = trpc(server.url, (await server.deps.db.user.count()) ? await adminKey(server) : "");
    const [house] = await admin.ads.creatives.list.query();
    await admin.ads.creatives.update.mutate({ id: house.id, active: false });
    const v = await admin.ads.creatives.create.mutate({ kind: "vast", name: "local VAST", vastUrl, durationSeconds: 30, rewardCredits: 2, active: true });
    const { api } = await newUser(server);
    for (let i = 0; i < 5; i++) {
      const s = await api.ads.start.mutate();
      expect(s.creative.id).toBe(v.id);
      expect(s.creative).toMatchObject({ kind: "vast", mediaUrl: vastUrl.replace("/vast.xml", "/ad.mp4"), mimeType: "video/mp4", durationSeconds: 7, clickUrl: "https://example.com/landing" });
      expect(s).toMatchObject({ requiredSeconds: 7, reward: 2000 });
      await api.ads.cancel.mutate({ sessionId: s.sessionId });
    }
    // Nothing active: a clear refusal.
    await admin.ads.creatives.update.mutate({ id: v.id, active: false });
    const none = await trpcError(api.ads.start.mutate());
    expect(none.message).toMatch(/No ads are available/);
    // A broken VAST tag fails over to another creative.
    await admin.ads.creatives.create.mutate({ kind: "vast", name: "broken", vastUrl: vastUrl.replace("/vast.xml", "/missing.xml"), durationSeconds: 5, rewardCredits: 1, active: true });
    await admin.ads.creatives.update.mutate({ id: house.id, active: true });
    for (let i = 0; i < 4; i++) {
      const s = await api.ads.start.mutate();
      expect(s.creative.id).toBe(house.id);
      await api.ads.cancel.mutate({ sessionId: s.sessionId });
    }
    const stats = await admin.ads.creatives.list.query();
    expect(stats.find((c) => c.id === v.id)!.views).toBe(5);
    expect(stats.find((c) => c.id === house.id)!.views).toBeGreaterThanOrEqual(4);
  });

  it("admin-only creative management and media upload", async () => {
    const { api, apiKey } = await newUser(server);
    expect((await trpcError(api.ads.creatives.list.query())).code).toBe("FORBIDDEN");
    const denied = await fetch(`${server.url}/api/ads/media`, { method: "POST", headers: { authorization: `Bearer ${apiKey}`, "content-type": "image/png" }, body: "x" });
    expect(denied.status).toBe(403);
    const key = await adminKey(server);
    const bad = await fetch(`${server.url}/api/ads/media`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "text/html" }, body: "<p>" });
    expect(bad.status).toBe(415);
    const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "base64");
    const up = await fetch(`${server.url}/api/ads/media`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "image/png" }, body: png });
    expect(up.status).toBe(201);
    const media = (await up.json()) as { mediaHash: string; mimeType: string };
    const admin = trpc(server.url, key);
    const c = await admin.ads.creatives.create.mutate({ kind: "image", name: "pixel", mediaHash: media.mediaHash, mimeType: media.mimeType, durationSeconds: 3, rewardCredits: 0.5, active: false });
    expect(c).toMatchObject({ kind: "image", reward: 500, active: false });
    const served = await fetch(`${server.url}/api/ads/media/${media.mediaHash}`);
    expect(served.headers.get("content-type")).toBe("image/png");
    expect(Buffer.from(await served.arrayBuffer()).equals(png)).toBe(true);
    await admin.ads.creatives.delete.mutate({ id: c.id });
    const [house] = await admin.ads.creatives.list.query();
    expect((await trpcError(admin.ads.creatives.delete.mutate({ id: house.id }))).message).toMatch(/deactivate it instead/);
  });
});

async function adminKey(server: TestServer) {
  const { createApiKey } = await import("../../server/auth/apiKeys");
  const admin = await server.deps.db.user.findFirstOrThrow({ where: { role: "admin" } });
  return (await createApiKey(server.deps.db, admin.id, "ads admin")).key;
}

describe("daily ad caps", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ ADS_DEFAULT_SECONDS: "1", ADS_DAILY_CAP_PER_ACCOUNT: "2", ADS_DAILY_CAP_PER_IP: "3", TRUST_PROXY: "1" });
  });
  afterAll(() => server?.close());

  function client(apiKey: string, ip: string) {
    return createTRPCClient<AppRouter>({ links: [httpLink({ url: `${server.url}/api/trpc`, headers: () => ({ authorization: `Bearer ${apiKey}`, "x-forwarded-for": `10.0.0.1, ${ip}` }) })] });
  }
  async function watchOne(api: Api) {
    const s = await api.ads.start.mutate();
    await watch(api, s.sessionId, 1100);
    return api.ads.claim.mutate({ sessionId: s.sessionId });
  }

  it("refuses over the cap per account and per IP", async () => {
    const a = await createUserWithKey(server.deps, "capa@example.com");
    const b = await createUserWithKey(server.deps, "capb@example.com");
    const c = await createUserWithKey(server.deps, "capc@example.com");
    const apiA = client(a.apiKey, "203.0.113.7");
    const apiB = client(b.apiKey, "203.0.113.7");
    await watchOne(apiA);
    await watchOne(apiA);
    const overAccount = await trpcError(apiA.ads.start.mutate());
    expect(overAccount.code).toBe("FORBIDDEN");
    expect(overAccount.message).toMatch(/this account has been paid for 2 ads .* limit is 2/);

    await watchOne(apiB);
    const overIp = await trpcError(apiB.ads.start.mutate());
    expect(overIp.code).toBe("FORBIDDEN");
    expect(overIp.message).toMatch(/3 ads have been paid to this network address .* limit is 3/);

    // Another address is not affected.
    await watchOne(client(c.apiKey, "198.51.100.9"));
    expect(await server.deps.db.ledgerEntry.count({ where: { kind: "ad", amount: { gt: 0 } } })).toBe(4);
    expect((await auditLedger(server.deps.db)).ok).toBe(true);
  });

  it("counts an IPv6 network (/48) as one address, whatever addresses in it the accounts come from", async () => {
    const users = await Promise.all(["v6a", "v6b"].map((n) => createUserWithKey(server.deps, `${n}@example.com`)));
    await watchOne(client(users[0].apiKey, "2001:db8:aa:1::1"));
    await watchOne(client(users[0].apiKey, "2001:db8:aa:2::1"));
    await watchOne(client(users[1].apiKey, "2001:db8:aa:ffff::7"));
    const over = await trpcError(client(users[1].apiKey, "2001:db8:aa:3:4:5:6:7").ads.start.mutate());
    expect(over.message).toMatch(/3 ads have been paid to this network address .* limit is 3/);
    // Another /48 is another network.
    await watchOne(client(users[1].apiKey, "2001:db8:ab::1"));
  });
});
