import http from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { fetchMetrics, metricValue } from "../../bench/lib/prom";
import { RawVolunteer, trpc, trpcError } from "../helpers/clients";
import { ESTIMATE_COST } from "../../server/http/loadGate";
import { createUserWithKey, sleep, startTestServer, type TestServer } from "../helpers/server";

// Shedding at the edge on event-loop delay (server/http/loadGate.ts), against a real server
// in this process: the test itself holds the server's event loop behind, as a flood of work
// would, and checks what is refused and what still answers.

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(delayMs: string, maxRequests = "0", perCaller = "16"): Promise<TestServer> {
  // Stalled ad media uploads hold calls in progress here: no minimum upload rate cuts them.
  const srv = await startTestServer({ LOAD_SHED_DELAY_MS: delayMs, LOAD_SHED_MAX_REQUESTS: maxRequests, LOAD_SHED_MAX_PER_CALLER: perCaller, SPOT_CHECKS: "off", UPLOAD_MIN_BYTES_PER_SECOND: "0" });
  cleanups.push(() => srv.close());
  return srv;
}

/** Keeps the loop busy 60 ms in every ~65: each of the gate's 10 ms ticks comes about 55 ms late. */
function overload(): () => void {
  const timer = setInterval(() => {
    const end = performance.now() + 60;
    while (performance.now() < end);
  }, 5);
  cleanups.push(() => clearInterval(timer));
  return () => clearInterval(timer);
}

const job = { kernel: "pi", chunks: 2, params: { samples: 20_000 }, replication: { replicas: 1, adaptive: false } };

describe("LOAD_SHED_DELAY_MS", () => {
  it("refuses new work with 503 and Retry-After while the loop is behind, keeps health, metrics and admin data answering, and admits again once it catches up", async () => {
    const srv = await server("15");
    const consumer = await createUserWithKey(srv.deps, "consumer@example.com");
    const admin = await createUserWithKey(srv.deps, "admin@example.com");
    await srv.deps.db.user.update({ where: { id: admin.user.id }, data: { role: "admin" } });
    const api = trpc(srv.url, consumer.apiKey);
    const balance = () => api.account.balance.query();
    const before = await balance();

    const stop = overload();
    await sleep(1200); // a second of it: the loop is busy and its smoothed delay well past twice 15 ms

    // New work: refused at once, in tRPC's shape, with nothing created or charged.
    expect(await trpcError(api.jobs.submit.mutate(job))).toMatchObject({ code: "SERVICE_UNAVAILABLE", httpStatus: 503 });
    const raw = await fetch(`${srv.url}/api/trpc/jobs.submit`, {
      method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${consumer.apiKey}` }, body: JSON.stringify(job),
    });
    expect(raw.status).toBe(503);
    expect(raw.headers.get("retry-after")).toBe("1");
    expect(await raw.json()).toMatchObject({ error: { data: { code: "SERVICE_UNAVAILABLE", path: "jobs.submit" } } });
    // A new volunteer socket is closed with 1013 (try again later) before its hello is read.
    const v = await RawVolunteer.connect(srv.url);
    cleanups.push(() => (v.closed ? undefined : v.close()));
    expect(await v.waitClosed(5000)).toEqual({ code: 1013, reason: "the server is overloaded; try again later" });

    // A path with a malformed escape is refused like any other call, not failed.
    expect((await fetch(`${srv.url}/api/trpc/jobs.%E0%A4%A`, { method: "POST" })).status).toBe(503);

    // What watches and runs the server still answers.
    expect((await fetch(`${srv.url}/api/health`)).status).toBe(200);
    const metrics = await fetchMetrics(srv.url);
    expect(metricValue(metrics, `tabgrid_load_shed_total{reason="overloaded"}`)).toBeGreaterThanOrEqual(3);
    // Every admin procedure is an operator's call, whatever its router: the dashboard's own query too.
    const ops = trpc(srv.url, admin.apiKey);
    await expect(ops.admin.volunteers.query()).resolves.toBeInstanceOf(Array);
    await expect(ops.monitoring.history.query({ minutes: 1 })).resolves.toHaveProperty("samples");

    stop();
    await sleep(200);
    expect(await balance()).toBe(before);
    expect(await srv.deps.db.job.count()).toBe(0);
    // Not refused, a malformed path is tRPC's to answer: a client error, never a 500.
    const malformed = await fetch(`${srv.url}/api/trpc/jobs.%E0%A4%A`, { method: "POST" });
    expect(malformed.status).toBeGreaterThanOrEqual(400);
    expect(malformed.status).toBeLessThan(500);
    expect(srv.logs.filter((l) => /failed/.test(l))).toEqual([]);
    // Caught up: the same submission goes through.
    const { id } = await api.jobs.submit.mutate(job);
    expect(await srv.deps.db.job.count({ where: { id } })).toBe(1);
  });

  it("does not refuse because of one long task on an otherwise idle loop", async () => {
    const srv = await server("40");
    const api = trpc(srv.url, (await createUserWithKey(srv.deps, "consumer@example.com")).apiKey);
    await sleep(100);
    const end = performance.now() + 60;
    while (performance.now() < end);
    // Sent right after the stall, while the gate's timer is still catching up.
    await expect(api.jobs.submit.mutate(job)).resolves.toMatchObject({ id: expect.any(String) });
    expect(metricValue(await fetchMetrics(srv.url), `tabgrid_load_shed_total{reason="overloaded"}`)).toBe(0);
  });

  it("does not refuse what queued behind one long stall of an idle loop (a cold page render)", async () => {
    const srv = await server("15");
    const api = trpc(srv.url, (await createUserWithKey(srv.deps, "consumer@example.com")).apiKey);
    await sleep(1100); // a second of an idle loop behind the gate
    // Sent, then the loop stalls 300 ms (20 times the threshold) before it reads it.
    const call = api.jobs.submit.mutate(job);
    await sleep(5);
    const end = performance.now() + 300;
    while (performance.now() < end);
    await expect(call).resolves.toMatchObject({ id: expect.any(String) });
    expect(metricValue(await fetchMetrics(srv.url), `tabgrid_load_shed_total{reason="overloaded"}`)).toBe(0);
  });

  it("is off at 0", async () => {
    const srv = await server("0");
    const api = trpc(srv.url, (await createUserWithKey(srv.deps, "consumer@example.com")).apiKey);
    const stop = overload();
    await sleep(300);
    await expect(api.jobs.submit.mutate(job)).resolves.toMatchObject({ id: expect.any(String) });
    stop();
  });
});

/**
 * An admin's ad media upload whose body never finishes: an API call that stays in progress
 * until it is aborted. (Programs and data files are not counted while they are received: they
 * have bounds of their own. A tRPC call is counted once its body is in.)
 */
function stalledUpload(url: string, apiKey: string): () => void {
  const req = http.request(`${url}/api/ads/media`, {
    method: "POST", headers: { authorization: `Bearer ${apiKey}`, "content-length": "100000", "content-type": "image/png" },
  });
  req.on("error", () => undefined);
  req.write("\x89PNG");
  return () => req.destroy();
}

describe("LOAD_SHED_MAX_REQUESTS", () => {
  it("refuses API calls past the limit in progress with 503 at once, never health or admin data, and admits again as calls end", async () => {
    const srv = await server("0", "2");
    const consumer = await createUserWithKey(srv.deps, "consumer@example.com");
    const admin = await createUserWithKey(srv.deps, "admin@example.com");
    await srv.deps.db.user.update({ where: { id: admin.user.id }, data: { role: "admin" } });
    const api = trpc(srv.url, consumer.apiKey);
    const stalls = [stalledUpload(srv.url, admin.apiKey), stalledUpload(srv.url, admin.apiKey)];
    cleanups.push(() => stalls.forEach((s) => s()));
    await sleep(200); // both reached the server and are reading their bodies

    const started = performance.now();
    expect(await trpcError(api.jobs.submit.mutate(job))).toMatchObject({ code: "SERVICE_UNAVAILABLE", httpStatus: 503 });
    expect(await trpcError(api.jobs.list.query())).toMatchObject({ code: "SERVICE_UNAVAILABLE" });
    expect(performance.now() - started).toBeLessThan(2000);
    expect((await fetch(`${srv.url}/api/health`)).status).toBe(200);
    await expect(trpc(srv.url, admin.apiKey).admin.volunteers.query()).resolves.toBeInstanceOf(Array);
    expect(await srv.deps.db.job.count()).toBe(0);

    // One ends (its client goes away): there is room for one more.
    stalls[0]!();
    await sleep(200);
    await expect(api.jobs.submit.mutate(job)).resolves.toMatchObject({ id: expect.any(String) });
    expect(metricValue(await fetchMetrics(srv.url), `tabgrid_load_shed_total{reason="overloaded"}`)).toBe(2);
  });
});

describe("LOAD_SHED_MAX_PER_CALLER", () => {
  it("answers a caller with too many calls in progress 429 at once, and serves another caller meanwhile", async () => {
    const srv = await server("0", "100", "2");
    const flooder = await createUserWithKey(srv.deps, "flooder@example.com");
    await srv.deps.db.user.update({ where: { id: flooder.user.id }, data: { role: "admin" } });
    const other = trpc(srv.url, (await createUserWithKey(srv.deps, "other@example.com")).apiKey);
    // A key counts as its caller once the server has verified it (until then, as its address).
    await trpc(srv.url, flooder.apiKey).account.balance.query();
    const stalls = [stalledUpload(srv.url, flooder.apiKey), stalledUpload(srv.url, flooder.apiKey)];
    cleanups.push(() => stalls.forEach((s) => s()));
    await sleep(200);

    const raw = await fetch(`${srv.url}/api/trpc/jobs.submit`, {
      method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${flooder.apiKey}` }, body: JSON.stringify(job),
    });
    expect(raw.status).toBe(429);
    expect(raw.headers.get("retry-after")).toBe("1");
    expect(await raw.json()).toMatchObject({ error: { message: "Too many of your calls are in progress at once. Wait for them, then try again.", data: { code: "TOO_MANY_REQUESTS" } } });
    // However the header spells the scheme, one key is one caller (each spelling was a caller of its own).
    for (const authorization of [`bearer ${flooder.apiKey}`, `BEARER\t${flooder.apiKey}`, `Bearer   ${flooder.apiKey}`]) {
      const again = await fetch(`${srv.url}/api/trpc/jobs.submit`, { method: "POST", headers: { "content-type": "application/json", authorization }, body: JSON.stringify(job) });
      expect(again.status, authorization).toBe(429);
    }
    await expect(other.jobs.submit.mutate(job)).resolves.toMatchObject({ id: expect.any(String) });
    expect(await srv.deps.db.job.count()).toBe(1);

    stalls.forEach((s) => s());
    await sleep(200);
    await expect(trpc(srv.url, flooder.apiKey).jobs.submit.mutate(job)).resolves.toMatchObject({ id: expect.any(String) });
  });
});

describe("bodies that trickle in", () => {
  /** A POST that declares 100 bytes and sends one; resolves with the answer, if one comes. */
  const trickle = (url: string, path: string, headers: Record<string, string>) =>
    new Promise<{ status: number; body: string } | "reset">((resolve) => {
      // From an address of its own (the consumer's calls come from 127.0.0.1).
      const req = http.request(`${url}${path}`, { method: "POST", localAddress: "127.0.0.2", headers: { "content-type": "application/json", "content-length": "100", ...headers } });
      req.on("response", (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", () => resolve("reset"));
      });
      req.on("error", () => resolve("reset"));
      req.write("{");
      cleanups.push(() => req.destroy());
    });

  it("hold no place of the server's: tRPC calls are counted once their body is in, one address receives 32 at once, and a trickle is cut at the minimum rate", async () => {
    // Two calls in progress fill the server: two trickled bodies would have kept everyone out.
    const srv = await startTestServer({ LOAD_SHED_DELAY_MS: "0", LOAD_SHED_MAX_REQUESTS: "2" });
    cleanups.push(() => srv.close());
    const consumer = await createUserWithKey(srv.deps, "consumer@example.com");
    const api = trpc(srv.url, consumer.apiKey);
    // A stranger's sign-ups, each with a session cookie of its own making (each was a caller of its own).
    const slow = Array.from({ length: 40 }, (_, i) => trickle(srv.url, "/api/trpc/account.signUp", { cookie: `next-auth.session-token=junk${i}` }));
    await sleep(500);
    await expect(api.jobs.submit.mutate(job)).resolves.toMatchObject({ id: expect.any(String) });
    await expect(api.jobs.list.query()).resolves.toHaveLength(1);
    await expect(api.account.balance.query()).resolves.toBeDefined();
    // An upload trickled in holds no place either (it has bounds of its own).
    const upload = http.request(`${srv.url}/api/data?name=slow.csv`, { method: "POST", headers: { authorization: `Bearer ${consumer.apiKey}`, "content-length": "100000" } });
    upload.on("error", () => undefined);
    upload.write("x,y\n");
    cleanups.push(() => upload.destroy());
    await sleep(200);
    await expect(api.jobs.submit.mutate(job)).resolves.toMatchObject({ id: expect.any(String) });

    // Past 32 from one address: 429 at once, in tRPC's shape.
    const answers = await Promise.all(slow);
    const refused = answers.filter((a) => a !== "reset" && a.status === 429);
    expect(refused).toHaveLength(8);
    expect(JSON.parse((refused[0] as { body: string }).body)).toMatchObject({ error: { data: { code: "TOO_MANY_REQUESTS", httpStatus: 429, path: "account.signUp" } } });
    // The other 32 are cut once they fall behind the minimum rate (over 10 s): 408.
    const cut = answers.filter((a) => a !== "reset" && a.status === 408);
    expect(cut).toHaveLength(32);
    expect(JSON.parse((cut[0] as { body: string }).body)).toMatchObject({
      error: { message: "The request came slower than 8 KiB a second; send it again on a better connection.", data: { code: "TIMEOUT", httpStatus: 408 } },
    });
    expect(await srv.deps.db.user.count()).toBe(1);
  }, 30_000);
});

describe("tRPC batches", () => {
  // One batched request of a hundred public price estimates held the loop 3.6 s before batches
  // were capped and counted call by call.
  const estimate = { kernel: "pi", params: { samples: 100_000_000_000 }, chunks: 10_000 };
  const batchUrl = (url: string, n: number, chunks = estimate.chunks) => {
    const input = encodeURIComponent(JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [i, { ...estimate, chunks }]))));
    return `${url}/api/trpc/${Array(n).fill("jobs.estimate").join(",")}?batch=1&input=${input}`;
  };

  it("refuses a batch of more than 16 calls with 400 and runs none of it; 16 are served", async () => {
    const srv = await server("0");
    const over = await fetch(batchUrl(srv.url, 17));
    expect(over.status).toBe(400);
    expect(JSON.stringify(await over.json())).toMatch(/[Bb]atch/);
    const ok = await fetch(batchUrl(srv.url, 16));
    expect(ok.status).toBe(200);
    const answers = (await ok.json()) as Array<{ result?: { data: { chunks: number } } }>;
    expect(answers.map((a) => a.result?.data.chunks)).toEqual(Array(16).fill(10_000));
  });

  it("counts a made-up session cookie as its address: a new one with each call gets no new rate", async () => {
    const srv = await startTestServer({ LOAD_SHED_DELAY_MS: "0", LOAD_SHED_MAX_REQUESTS: "100", LOAD_SHED_CALLER_RATE: "1" }); // 1 a second, 2 at once
    cleanups.push(() => srv.close());
    const statuses: number[] = [];
    const started = performance.now();
    for (let i = 0; i < 12; i++) {
      const cookie = `next-auth.session-token=forged-${i}-${Math.random().toString(36).slice(2)}`;
      statuses.push((await fetch(`${srv.url}/api/trpc/leaderboard.get`, { headers: { cookie } })).status);
    }
    // Each a caller of its own, none was refused; as one, all past the burst and the refill meanwhile are.
    const refilled = Math.ceil((performance.now() - started) / 1000);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(Math.max(1, Math.min(8, 12 - 2 - refilled)));
  });

  it("counts each call of a batch against the caller's rate", async () => {
    const srv = await startTestServer({ LOAD_SHED_DELAY_MS: "0", LOAD_SHED_MAX_REQUESTS: "100", LOAD_SHED_CALLER_RATE: "25" }); // 25 a second, 50 at once
    cleanups.push(() => srv.close());
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await fetch(batchUrl(srv.url, 5, 1))).status);
    // An estimate costs ESTIMATE_COST (5) calls: two batches of 5 take the burst of 50; the third would need a second's refill.
    expect(ESTIMATE_COST).toBe(5);
    expect(statuses).toEqual([200, 200, 429]);
  });
});

describe("uploads received at once", () => {
  // Uploads are read whole into memory: 48 of 64 MiB at once took a server to 5.9 GB.
  // Declares `length` bytes, sends `sent` of them and stops.
  const stall = (url: string, apiKey: string, length: number, sent = 4) => {
    const req = http.request(`${url}/api/data?name=slow.csv`, { method: "POST", headers: { authorization: `Bearer ${apiKey}`, "content-length": String(length) } });
    req.on("error", () => undefined);
    req.write(`x,y\n${"1".repeat(Math.max(0, sent - 4))}`);
    return () => req.destroy();
  };
  const post = (url: string, apiKey: string, body: string) =>
    fetch(`${url}/api/data?name=up.csv`, { method: "POST", headers: { authorization: `Bearer ${apiKey}` }, body });

  it("are bounded in bytes server-wide and two per account; the refused are told to come back", async () => {
    const srv = await startTestServer({ UPLOAD_MEMORY_BYTES: "150000", UPLOAD_MIN_BYTES_PER_SECOND: "0" });
    cleanups.push(() => srv.close());
    const a = await createUserWithKey(srv.deps, "uploader-a@example.com");
    const b = await createUserWithKey(srv.deps, "uploader-b@example.com");
    const stalls = [stall(srv.url, a.apiKey, 100_000, 90_000), stall(srv.url, a.apiKey, 1000)];
    cleanups.push(() => stalls.forEach((s) => s()));
    await sleep(300);

    // Another account's 100,000 bytes would pass the 150,000 (90,000 of them received): 503, come back.
    const busy = await post(srv.url, b.apiKey, "x".repeat(100_000));
    expect(busy.status).toBe(503);
    expect(busy.headers.get("retry-after")).toBe("2");
    expect(await busy.json()).toEqual({ error: "The server is receiving other uploads; try again in a few seconds." });
    // A small one fits meanwhile.
    expect((await post(srv.url, b.apiKey, "1,2\n")).status).toBe(201);
    // The account with two uploads under way waits for one of them.
    const mine = await post(srv.url, a.apiKey, "3,4\n");
    expect(mine.status).toBe(429);
    expect(await mine.json()).toEqual({ error: "At most 2 of your uploads are received at once; wait for one to finish." });
    expect(await srv.deps.db.dataFile.count({ where: { ownerId: a.user.id } })).toBe(0);

    stalls.forEach((s) => s());
    await sleep(200);
    expect((await post(srv.url, a.apiKey, "3,4\n")).status).toBe(201);
    expect((await post(srv.url, b.apiKey, "x".repeat(100_000))).status).toBe(201);
  });

  it("count what has arrived, not what is declared: trickled uploads keep no one else out", async () => {
    const srv = await startTestServer({ UPLOAD_MEMORY_BYTES: "150000" });
    cleanups.push(() => srv.close());
    const accounts = await Promise.all(["t1", "t2"].map((n) => createUserWithKey(srv.deps, `${n}@example.com`)));
    const victim = await createUserWithKey(srv.deps, "victim@example.com");
    // Two accounts, two uploads each, declaring 100,000 bytes and sending 4.
    const stalls = accounts.flatMap((a) => [stall(srv.url, a.apiKey, 100_000), stall(srv.url, a.apiKey, 100_000)]);
    cleanups.push(() => stalls.forEach((s) => s()));
    await sleep(300);
    expect((await post(srv.url, victim.apiKey, "x".repeat(100_000))).status).toBe(201);
  });
});
