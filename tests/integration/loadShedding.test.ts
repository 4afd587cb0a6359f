import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_BUFFERED_BYTES } from "../../server/coordinator/connection";
import { MAX_SOCKETS_PER_VOLUNTEER } from "../../server/coordinator/edge";
import { FILES_KEPT, volunteerSocketCap } from "../../server/http/openFiles";
import { fetchMetrics, metricValue } from "../../bench/lib/prom";
import { RawVolunteer, trpc, trpcError } from "../helpers/clients";
import { createUserWithKey, sleep, startCliVolunteer, startTestServer, waitFor, type TestServer } from "../helpers/server";

// Overload protection, each proven against a real server over real sockets: the volunteer
// connection cap, cutting off a volunteer that stops reading, and the per-consumer submission
// rate. Each one shows up in tabgrid_load_shed_total{reason}.

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

// Hand-driven volunteers count their tasks exactly: no ringers or probation (see attack.*.test.ts).
async function server(env: Record<string, string>): Promise<TestServer> {
  const srv = await startTestServer({ SPOT_CHECKS: "off", ...env });
  cleanups.push(() => srv.close());
  return srv;
}

const shed = async (url: string, reason: string) => metricValue(await fetchMetrics(url), `tabgrid_load_shed_total{reason="${reason}"}`);

async function volunteer(url: string, threads = 0) {
  const v = await RawVolunteer.connect(url);
  cleanups.push(() => (v.closed ? undefined : v.close()));
  v.hello(threads);
  return v;
}

describe("MAX_VOLUNTEER_CONNECTIONS", () => {
  it("refuses sockets over the cap with 1013 at once, counts them, and takes volunteers again when one leaves", async () => {
    const srv = await server({ MAX_VOLUNTEER_CONNECTIONS: "2" });
    const a = await volunteer(srv.url);
    const b = await volunteer(srv.url);
    await a.next("welcome");
    await b.next("welcome");
    expect(await shed(srv.url, "connection-refused")).toBe(0);

    // Two more at once: both refused straight after the handshake, before any hello is read.
    const over = await Promise.all([RawVolunteer.connect(srv.url), RawVolunteer.connect(srv.url)]);
    for (const v of over) {
      expect(await v.waitClosed(2000)).toEqual({ code: 1013, reason: "too many volunteers connected; try again later" });
      expect(v.messages).toEqual([]);
    }
    expect(await shed(srv.url, "connection-refused")).toBe(2);
    expect(srv.deps.coordinator.volunteers()).toHaveLength(2);

    // Refused sockets do not hold a place: once a volunteer leaves, the next one gets in.
    await a.close();
    await waitFor(() => srv.deps.coordinator.volunteers().length === 1, 5000, "the server to see the volunteer leave");
    const c = await volunteer(srv.url);
    expect(await c.next("welcome")).toMatchObject({ type: "welcome" });
    expect(c.closed).toBeUndefined();
    expect(await shed(srv.url, "connection-refused")).toBe(2);
  });
});

describe("CONNECTIONS_PER_ADDRESS", () => {
  /** A raw connection: its first reply's status line, or "closed" when the server ends it without one. */
  const ask = (url: string, request: string | null) => new Promise<{ socket: net.Socket; answer: Promise<string> }>((resolve, reject) => {
    const { hostname, port } = new URL(url);
    const socket = net.connect(Number(port), hostname, () => {
      if (request !== null) socket.write(request);
      resolve({ socket, answer });
    });
    socket.on("error", () => undefined);
    let data = "";
    const answer = new Promise<string>((done) => {
      socket.on("data", (d) => (data += d.toString()));
      socket.on("close", () => done(data.split("\r\n")[0] || "closed"));
    });
    cleanups.push(() => socket.destroy());
    setTimeout(() => reject(new Error("no connection")), 5000).unref();
  });
  const health = "GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

  it("ends connections past the address's fill at once, whatever they are for, and takes one again when one closes", async () => {
    const srv = await server({ CONNECTIONS_PER_ADDRESS: "3" });
    // Three idle connections, as a client sending its headers a byte at a time holds them.
    const idle = await Promise.all([0, 1, 2].map(() => ask(srv.url, null)));
    await new Promise((r) => setTimeout(r, 100));
    expect(await (await ask(srv.url, health)).answer).toBe("closed");
    expect(await shed(srv.url, "connection-refused").catch(() => "unreachable")).toBe("unreachable");
    idle[0].socket.destroy();
    await waitFor(async () => (await (await ask(srv.url, health)).answer) === "HTTP/1.1 200 OK" || undefined, 5000, "a connection once one closed");
  });
});

describe("volunteer sockets per address and per volunteer id", () => {
  it("refuses sockets past VOLUNTEER_SOCKETS_PER_ADDRESS with 1013, and takes one again when one closes", async () => {
    const srv = await server({ VOLUNTEER_SOCKETS_PER_ADDRESS: "3" });
    const held = [];
    for (let i = 0; i < 3; i++) {
      const v = await volunteer(srv.url);
      await v.next("welcome");
      held.push(v);
    }
    const over = await RawVolunteer.connect(srv.url);
    expect(await over.waitClosed(2000)).toEqual({ code: 1013, reason: "too many volunteers connected from your network address; try again later" });
    expect(await shed(srv.url, "connection-refused")).toBe(1);
    await held[0].close();
    await waitFor(async () => {
      const v = await RawVolunteer.connect(srv.url);
      cleanups.push(() => (v.closed ? undefined : v.close()));
      v.hello(0);
      return (await Promise.race([v.next("welcome").then(() => true), v.waitClosed(5000).then(() => false)])) || undefined;
    }, 10_000, "a socket once one closed");
  });

  it(`registers one volunteer id ${MAX_SOCKETS_PER_VOLUNTEER} times at most`, async () => {
    const srv = await server({});
    const first = await volunteer(srv.url);
    await first.next("welcome");
    for (let i = 1; i < MAX_SOCKETS_PER_VOLUNTEER; i++) {
      const again = await RawVolunteer.connect(srv.url, { identity: first.identity });
      cleanups.push(() => (again.closed ? undefined : again.close()));
      again.hello(0);
      await again.next("welcome");
    }
    const over = await RawVolunteer.connect(srv.url, { identity: first.identity });
    over.hello(0);
    expect(await over.waitClosed(5000)).toMatchObject({ code: 1008 });
    expect(over.messages).toEqual([{ type: "error", code: "hello-refused", message: `This volunteer id is connected ${MAX_SOCKETS_PER_VOLUNTEER} times already, the most one id may be: stop one of them first.` }]);
    expect(srv.deps.coordinator.volunteers()).toHaveLength(MAX_SOCKETS_PER_VOLUNTEER);
  });

  it("keeps the whole cap below the process's open-file limit", () => {
    expect(volunteerSocketCap(20_000, 20_000)).toBe(20_000 - FILES_KEPT);
    expect(volunteerSocketCap(500, 20_000)).toBe(500);
    expect(volunteerSocketCap(20_000, undefined)).toBe(20_000);
  });
});

describe("NEW_VOLUNTEERS_PER_ADDRESS", () => {
  it("refuses hellos with ids new to the server past the address's budget (1013, try later), and lets known ids in", async () => {
    const srv = await server({ NEW_VOLUNTEERS_PER_ADDRESS: "3" });
    const first = [];
    for (let i = 0; i < 3; i++) {
      const v = await volunteer(srv.url);
      await v.next("welcome");
      first.push(v);
    }
    // A fourth made-up id, however it says where it comes from (no TRUST_PROXY here).
    const over = await RawVolunteer.connect(srv.url, { headers: { "X-Forwarded-For": "198.51.100.9" } });
    cleanups.push(() => (over.closed ? undefined : over.close()));
    over.hello(0);
    const tooMany = /^Too many new volunteers from this network address in the last hour: connect again later/;
    expect(await over.waitClosed(5000)).toEqual({ code: 1013, reason: expect.stringMatching(tooMany) });
    expect(over.messages).toEqual([{ type: "error", code: "hello-refused", message: expect.stringMatching(tooMany) }]);
    expect(await shed(srv.url, "new-volunteer-throttled")).toBe(1);
    expect(await srv.deps.db.volunteer.count()).toBe(3);

    // A volunteer the server knows comes back as usual.
    const known = first[0].identity;
    await first[0].close();
    await waitFor(() => srv.deps.coordinator.volunteers().length === 2, 5000, "the server to see the volunteer leave");
    const again = await RawVolunteer.connect(srv.url, { identity: known });
    cleanups.push(() => (again.closed ? undefined : again.close()));
    again.hello(0);
    expect(await again.next("welcome")).toMatchObject({ type: "welcome", volunteerId: known.volunteerId });
    expect(await shed(srv.url, "new-volunteer-throttled")).toBe(1);
  });
});

describe("a volunteer that stops reading its socket", () => {
  it("is cut off once the server holds more than MAX_BUFFERED_BYTES for it, and its leases go to others", async () => {
    // Its junk results are answered without limit here, to fill the buffer quickly.
    const srv = await server({ STRAY_RESULTS_PER_SECOND: "1000000000" });
    const { apiKey } = await createUserWithKey(srv.deps, "consumer@example.com");
    const api = trpc(srv.url, apiKey);
    const slow = await volunteer(srv.url, 4);
    await slow.next("welcome");
    const { id } = await api.jobs.submit.mutate({ kernel: "pi", chunks: 6, params: { samples: 60_000 }, replication: { replicas: 1, adaptive: false } });
    await waitFor(() => slow.tasks().length === 6, 5000, "the slow volunteer to lease every unit");
    const held = slow.tasks().length;

    // It stops reading, and sends results for tasks that do not exist: each frame is answered
    // by an ack that rejects every one of them, about as large as the frame.
    slow.ws.pause();
    // (At most 512 of them a frame: a frame with more is refused as bad, not echoed.)
    const bogus = JSON.stringify({ type: "results", results: Array.from({ length: 500 }, (_, i) => ({ taskId: `${"x".repeat(180)}${i}`, output: 0 })) });
    const ackBytes = 500 * (200 + `,"reason":"unknown-task"`.length + 12);
    const gone = () => !srv.deps.coordinator.volunteers().some((v) => v.volunteerId === slow.identity.volunteerId);
    let sent = 0;
    // Up to four times the limit (kernel socket buffers take their share first); then it failed.
    while (!gone() && sent * ackBytes < 4 * MAX_BUFFERED_BYTES + 32 * 2 ** 20) {
      slow.send(bogus);
      sent++;
      await sleep(1);
    }
    await waitFor(gone, 5000, "the server to drop the volunteer that does not read");
    expect(sent * ackBytes).toBeGreaterThan(MAX_BUFFERED_BYTES);
    expect(srv.logs.some((l) => l.includes(`left; ${held} task(s) re-queued`))).toBe(true);

    // Terminated, not closed politely: the client finds a reset connection once it reads again.
    slow.ws.resume();
    expect((await slow.waitClosed(5000)).code).toBe(1006);

    // Its units are computed by someone else and the job completes.
    const good = startCliVolunteer(srv.url, 2, { dir: srv.dir, name: "good" });
    cleanups.push(() => good.stop());
    await waitFor(async () => (await srv.deps.db.job.findUnique({ where: { id }, select: { state: true } }))?.state === "completed", 30_000, "the job to complete");
  });
});

describe("SUBMISSIONS_PER_SECOND and SUBMISSION_BURST", () => {
  it("answer TOO_MANY_REQUESTS to a consumer over its rate, and to no one else", async () => {
    const srv = await server({ SUBMISSIONS_PER_SECOND: "2", SUBMISSION_BURST: "3" });
    const flooder = trpc(srv.url, (await createUserWithKey(srv.deps, "flooder@example.com")).apiKey);
    const other = trpc(srv.url, (await createUserWithKey(srv.deps, "other@example.com")).apiKey);
    const job = { kernel: "pi", chunks: 1, params: { samples: 10_000 }, replication: { replicas: 1 } };

    for (let i = 0; i < 3; i++) await flooder.jobs.submit.mutate(job);
    const e = await trpcError(flooder.jobs.submit.mutate(job));
    expect(e).toMatchObject({ code: "TOO_MANY_REQUESTS", httpStatus: 429 });
    expect(e.message).toBe("Too many job submissions: at most 2 a second (3 at once) per account. Wait a moment and try again.");
    expect(await shed(srv.url, "submission-throttled")).toBe(1);

    // The limit is per account: another consumer submits as usual meanwhile.
    await other.jobs.submit.mutate(job);
    // Nothing was stored for the refused call.
    expect(await srv.deps.db.job.count()).toBe(4);

    // The bucket refills at the sustained rate.
    await sleep(600);
    await flooder.jobs.submit.mutate(job);
    expect(await srv.deps.db.job.count()).toBe(5);
    expect(await shed(srv.url, "submission-throttled")).toBe(1);
  });
});

describe("results for tasks a volunteer does not hold", () => {
  it("are told back one by one, up to what it could ever have held; past that its socket is closed", async () => {
    const srv = await server({});
    const v = await volunteer(srv.url, 1);
    await v.next("welcome");
    const bogus = (n: number, from = 0) => ({ type: "results", results: Array.from({ length: n }, (_, i) => ({ taskId: `nope-${from + i}`, output: 0 })) });

    // A few stale results (crossed a revoke, say): each one is answered.
    v.send(JSON.stringify(bogus(3)));
    const ack = await v.next("ack");
    expect(ack.rejected).toEqual([0, 1, 2].map((i) => ({ taskId: `nope-${i}`, reason: "unknown-task" })));
    // 400 more at once are still within what a volunteer may hold (512).
    let before = v.messages.length;
    v.send(JSON.stringify(bogus(400, 3)));
    expect((await v.next("ack", before)).rejected).toHaveLength(400);

    // 400 more at once: more than it could have been sent. An error, at most 512 echoed, closed.
    before = v.messages.length;
    v.send(JSON.stringify(bogus(400, 403)));
    const err = await v.next("error", before);
    expect(err).toMatchObject({ code: "bad-message", message: "400 results for tasks this volunteer does not hold, more (in number or in bytes) than it could have been sent; the connection is closed" });
    const echoed = v.messages.slice(before).flatMap((m) => (m.type === "ack" ? m.rejected : []));
    expect(echoed.length).toBeLessThanOrEqual(512);
    expect((await v.waitClosed(5000)).code).toBe(1008);
  });

  it("close its socket once their bytes pass a few full frames, however few results they hold", async () => {
    const srv = await server({});
    const v = await volunteer(srv.url, 1);
    await v.next("welcome");
    // One result a frame (well within the count), of ~3.9 MB: the fifth passes 16 MiB.
    const big = (i: number) => JSON.stringify({ type: "results", results: [{ taskId: `junk-${i}`, output: { inside: 1, samples: 2, pad: "y".repeat(3_900_000) } }] });
    let acked = 0;
    for (let i = 0; i < 12 && !v.messages.some((m) => m.type === "error"); i++) {
      const before = v.messages.length;
      v.send(big(i));
      await waitFor(() => v.messages.length > before, 10_000, "an answer to the frame");
      if (v.messages.at(-1)!.type === "ack") acked++;
    }
    // Four frames (15.6 MB) are within the allowance; the fifth is not.
    expect(acked).toBe(4);
    expect((await v.waitClosed(5000)).code).toBe(1008);
    expect(v.messages.some((m) => m.type === "error" && /in number or in bytes/.test(String(m.message)))).toBe(true);
  });
});
