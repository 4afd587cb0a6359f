import net from "node:net";
import { createTRPCClient, createWSClient, TRPCClientError, wsLink } from "@trpc/client";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appRouter, type AppRouter } from "../../server/api/root";
import { INTERNAL_ERROR_MESSAGE } from "../../server/api/trpc";
import { startCluster } from "../../server/cluster/cluster";
import { health } from "../../server/http/health";
import type { Db } from "../../server/store/prisma";
import { TRPC_WS_PATH } from "../../server/app";
import { MAX_TRPC_SOCKETS_PER_ADDRESS } from "../../server/http/trpcSocketGuard";
import { VOLUNTEER_WS_PATH } from "../../worker/protocol/messages";
import { createUserWithKey, repoRoot, startTestServer, waitFor, type TestServer } from "../helpers/server";
import { trpc } from "../helpers/clients";

// Issue 11, part 4: "Errors that tell no secrets". Error answers of a production server, over
// HTTP and over tRPC's WebSocket, carry no stack and name no file of the server: an input
// error, a NOT_FOUND, and internal errors provoked for real (a malformed session cookie that
// the credentials check chokes on; a database table that has gone). The server logs the
// details instead. jobs.watch of someone else's job answers NOT_FOUND, as jobs.get does.
// Internal errors are provoked by taking a table away for a moment (the API keys' table makes
// the credentials check itself fail), and a malformed session cookie is thrown at every door.

let srv: TestServer;
let alice: Awaited<ReturnType<typeof createUserWithKey>>;
let bob: Awaited<ReturnType<typeof createUserWithKey>>;
let alicesJob: string;

/** A session cookie whose value is not valid percent-encoding. */
const BAD_COOKIE = "next-auth.session-token=%E0%A4%A";

beforeAll(async () => {
  // The production configuration, as `npm start` runs it.
  srv = await startTestServer({ NODE_ENV: "production" });
  alice = await createUserWithKey(srv.deps, "alice@example.com");
  bob = await createUserWithKey(srv.deps, "bob@example.com");
  // No volunteer is connected: the job stays running, which is all these tests need.
  const job = await trpc(srv.url, alice.apiKey).jobs.submit.mutate({ kernel: "pi", chunks: 2, params: { samples: 2_000_000 }, replication: { replicas: 1 } });
  alicesJob = job.id;
});

afterAll(async () => {
  await srv?.close();
});

/** Whatever a client received must not give the server's insides away. */
function expectNoSecrets(body: string) {
  expect(body).not.toMatch(/"stack"/);
  expect(body).not.toContain(repoRoot);
  expect(body).not.toContain("/node_modules/");
  expect(body).not.toMatch(/\.[cm]?[jt]sx?:\d/); // file.ts:12 of a stack frame
  expect(body).not.toMatch(/\n\s+at /);
}

const auth = (key: string) => ({ authorization: `Bearer ${key}` });

async function httpGet(path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${srv.url}${path}`, { headers });
  const text = await res.text();
  expectNoSecrets(text);
  return { status: res.status, text, json: JSON.parse(text) as unknown };
}

/** GET /api/trpc/<path>?input=… (a tRPC query over plain HTTP, as httpLink sends it). */
async function trpcHttp(path: string, input: unknown, headers: Record<string, string> = {}) {
  const q = input === undefined ? "" : `?input=${encodeURIComponent(JSON.stringify(input))}`;
  const r = await httpGet(`/api/trpc/${path}${q}`, headers);
  const error = (r.json as { error?: { message: string; code: number; data: { code: string; httpStatus: number; stack?: string } } }).error;
  return { status: r.status, error };
}

/** A raw tRPC WebSocket, recording every frame it receives (as text, to check, and parsed). */
class TrpcSocket {
  readonly frames: Array<{ id: number | null; error?: { message: string; data: { code: string; stack?: string } }; result?: { type: string; data?: unknown } }> = [];
  closed = false;
  /** The close frame's code and reason, once closed. */
  closedWith: { code: number; reason: string } | undefined;
  private nextId = 1;
  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      const text = data.toString();
      expectNoSecrets(text);
      this.frames.push(JSON.parse(text));
    });
    ws.on("close", (code, reason) => {
      this.closed = true;
      this.closedWith = { code, reason: reason.toString() };
    });
    ws.on("error", () => {});
  }

  static async open(headers: Record<string, string> = {}) {
    const ws = new WebSocket(`${srv.url.replace(/^http/, "ws")}${TRPC_WS_PATH}`, { headers });
    // Listening before the socket opens: a frame may come right behind the handshake.
    const socket = new TrpcSocket(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return socket;
  }

  /** Sends one call and returns its id. */
  send(method: "query" | "mutation" | "subscription" | "subscription.stop", path: string, input?: unknown): number {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ id, method, params: { path, input } }));
    return id;
  }

  /** The first frame answering `id` that matches, waiting for it. */
  answer(id: number | null, match: (f: TrpcSocket["frames"][number]) => boolean = () => true) {
    return waitFor(() => this.frames.find((f) => f.id === id && match(f)), 5000, `an answer to call ${id}`, 5);
  }

  async call(method: "query" | "mutation" | "subscription", path: string, input?: unknown) {
    return this.answer(this.send(method, path, input));
  }

  close() {
    this.ws.close();
  }
}

/** Renames a table away for the length of `body`: every query on it fails inside the server. */
async function withoutTable<T>(table: string, body: () => Promise<T>): Promise<T> {
  await srv.deps.db.$executeRawUnsafe(`ALTER TABLE "${table}" RENAME TO "${table}_moved_away"`);
  try {
    return await body();
  } finally {
    await srv.deps.db.$executeRawUnsafe(`ALTER TABLE "${table}_moved_away" RENAME TO "${table}"`);
  }
}

describe("the production configuration", () => {
  it("runs tRPC out of development mode (no stacks in error shapes)", () => {
    expect(process.env.NODE_ENV).not.toBe("development");
    expect(srv.deps.env.NODE_ENV).toBe("production");
    expect(appRouter._def._config.isDev).toBe(false);
  });
});

describe("tRPC over HTTP", () => {
  it("an input error: BAD_REQUEST with the problem, no stack", async () => {
    const r = await trpcHttp("jobs.get", { id: "" }, auth(bob.apiKey));
    expect(r.status).toBe(400);
    expect(r.error?.data.code).toBe("BAD_REQUEST");
    expect(r.error?.message).toMatch(/^id: /);
    expect(r.error?.data).not.toHaveProperty("stack");

    const garbled = await httpGet(`/api/trpc/jobs.get?input=${encodeURIComponent("{not json")}`, auth(bob.apiKey));
    expect(garbled.status).toBe(400);
  });

  it("someone else's job, an unknown procedure: NOT_FOUND, no stack", async () => {
    const other = await trpcHttp("jobs.get", { id: alicesJob }, auth(bob.apiKey));
    expect(other.status).toBe(404);
    expect(other.error?.data.code).toBe("NOT_FOUND");
    expect(other.error?.data).not.toHaveProperty("stack");
    expect((await trpcHttp("jobs.get", { id: alicesJob }, auth(alice.apiKey))).status).toBe(200);

    const unknown = await trpcHttp("jobs.launchMissiles", undefined, auth(bob.apiKey));
    expect(unknown.status).toBe(404);
    expect(unknown.error?.data.code).toBe("NOT_FOUND");
  });

  it("an internal error while identifying the caller: a generic message, the details in the log", async () => {
    const logged = srv.logs.length;
    const r = await withoutTable("ApiKey", () => trpcHttp("cluster.status", undefined, auth(bob.apiKey)));
    expect(r.status).toBe(500);
    expect(r.error).toMatchObject({ message: INTERNAL_ERROR_MESSAGE, data: { code: "INTERNAL_SERVER_ERROR" } });
    expect(r.error?.data).not.toHaveProperty("stack");
    expect(JSON.stringify(r.error)).not.toMatch(/ApiKey|does not exist|SQLITE|prisma/i);
    expect(srv.logs.slice(logged).join("\n")).toMatch(/ApiKey/);
  });

  it("a malformed session cookie gets no exception text back", async () => {
    const r = await trpcHttp("cluster.status", undefined, { cookie: BAD_COOKIE });
    expect(JSON.stringify(r)).not.toMatch(/URI malformed/);
    if (r.error) expect(r.error.message).toBe(INTERNAL_ERROR_MESSAGE);
  });

  it("an internal error from the database: no SQL, no table, no file", async () => {
    const logged = srv.logs.length;
    const r = await withoutTable("Team", () => trpcHttp("teams.list", undefined, auth(bob.apiKey)));
    expect(r.status).toBe(500);
    expect(r.error).toMatchObject({ message: INTERNAL_ERROR_MESSAGE, data: { code: "INTERNAL_SERVER_ERROR" } });
    expect(JSON.stringify(r.error)).not.toMatch(/main\.Team|no such table|does not exist|SQLITE|prisma/i);
    expect(srv.logs.slice(logged).join("\n")).toMatch(/teams\.list/);
    // Back to normal once the table is back.
    expect((await trpcHttp("teams.list", undefined, auth(bob.apiKey))).status).toBe(200);
  });

  it("a batch mixing a good call and failing ones answers each without secrets", async () => {
    const input = encodeURIComponent(JSON.stringify({ 0: { id: alicesJob }, 1: { id: "" } }));
    const r = await httpGet(`/api/trpc/jobs.get,jobs.get,cluster.status?batch=1&input=${input}`, auth(bob.apiKey));
    const answers = r.json as Array<{ error?: { data: { code: string } } }>;
    expect(answers.map((a) => a.error?.data.code ?? "ok")).toEqual(["NOT_FOUND", "BAD_REQUEST", "ok"]);
  });
});

describe("tRPC over its WebSocket", () => {
  it("an input error, with no stack", async () => {
    const s = await TrpcSocket.open(auth(bob.apiKey));
    try {
      const bad = await s.call("subscription", "jobs.watch", { id: "" });
      expect(bad.error?.data.code).toBe("BAD_REQUEST");
      expect(bad.error?.message).toMatch(/^id: /);
      expect(bad.error?.data).not.toHaveProperty("stack");
    } finally {
      s.close();
    }
  });

  it("serves subscriptions only: a query, a mutation or an oversized batch closes the socket (1008) before tRPC runs it", async () => {
    // Each of these once ran on the event loop: 300 price estimates in one frame held it 4.8 s.
    const estimate = { kernel: "pi", params: { samples: 100_000_000_000 }, chunks: 10_000 };
    const frames: Array<{ frame: unknown; reason: RegExp }> = [
      { frame: { id: 1, method: "query", params: { path: "jobs.estimate", input: estimate } }, reason: /only subscriptions/ },
      { frame: [{ id: 1, method: "subscription", params: { path: "cluster.watch" } }, { id: 2, method: "mutation", params: { path: "account.signUp", input: {} } }], reason: /only subscriptions/ },
      { frame: Array.from({ length: 17 }, (_, i) => ({ id: i + 1, method: "subscription", params: { path: "cluster.watch" } })), reason: /more than 16 messages/ },
      { frame: "{not json", reason: /not JSON/ },
    ];
    for (const { frame, reason } of frames) {
      const s = await TrpcSocket.open(auth(bob.apiKey));
      const signUps = await srv.deps.db.user.count();
      s.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
      await waitFor(() => s.closed, 5000, "the socket to close");
      expect(s.closedWith?.code, JSON.stringify(frame).slice(0, 80)).toBe(1008);
      expect(s.closedWith?.reason).toMatch(reason);
      // Nothing of the frame ran: no answer to any of its calls, no subscription started.
      expect(s.frames.filter((f) => f.id !== null)).toEqual([]);
      expect(await srv.deps.db.user.count()).toBe(signUps);
    }
    // Sixteen subscriptions in one frame are served.
    const s = await TrpcSocket.open(auth(bob.apiKey));
    try {
      s.ws.send(JSON.stringify(Array.from({ length: 16 }, (_, i) => ({ id: i + 1, method: "subscription", params: { path: "cluster.watch" } }))));
      await waitFor(() => new Set(s.frames.filter((f) => f.result?.type === "data").map((f) => f.id)).size === 16, 5000, "16 snapshots");
      expect(s.closed).toBe(false);
    } finally {
      s.close();
    }
  });

  it("holds at most 32 sockets from one address; a closed one frees its place", async () => {
    // 5,000 sockets of 32 subscriptions each from one client took RSS to 1.6 GiB and health to 80 s.
    const open: TrpcSocket[] = [];
    try {
      for (let i = 0; i < MAX_TRPC_SOCKETS_PER_ADDRESS; i++) open.push(await TrpcSocket.open());
      await expect(TrpcSocket.open()).rejects.toThrow(/429/);
      open.pop()!.close();
      await waitFor(async () => {
        const s = await TrpcSocket.open().catch(() => undefined);
        if (s) open.push(s);
        return s;
      }, 5000, "a place to free");
      // The sockets still serve their subscriptions.
      const s = open[0];
      const id = s.send("subscription", "cluster.watch");
      await s.answer(id, (f) => f.result?.type === "data");
    } finally {
      for (const s of open) s.close();
      // The server frees their places as their TCP connections end: the next tests open sockets too.
      await waitFor(() => open.every((s) => s.closed), 5000, "the sockets to close");
      await waitFor(async () => {
        const probe = await TrpcSocket.open().catch(() => undefined);
        probe?.close();
        return probe;
      }, 5000, "the places to be free");
    }
  });

  it("jobs.watch of someone else's job answers NOT_FOUND; of one's own, its snapshots", async () => {
    const s = await TrpcSocket.open(auth(bob.apiKey));
    try {
      const other = await s.answer(s.send("subscription", "jobs.watch", { id: alicesJob }), (f) => !!f.error);
      expect(other.error).toMatchObject({ data: { code: "NOT_FOUND" } });
      expect(other.error?.message).not.toBe(INTERNAL_ERROR_MESSAGE);
      expect(other.error?.data).not.toHaveProperty("stack");
      const missing = await s.answer(s.send("subscription", "jobs.watch", { id: "no-such-job" }), (f) => !!f.error);
      expect(missing.error).toMatchObject({ data: { code: "NOT_FOUND" } });
    } finally {
      s.close();
    }

    const own = await TrpcSocket.open(auth(alice.apiKey));
    try {
      const id = own.send("subscription", "jobs.watch", { id: alicesJob });
      const first = await own.answer(id, (f) => f.result?.type === "data");
      expect(first.result?.data).toMatchObject({ id: alicesJob, state: "running" });
      expect(own.frames.filter((f) => f.error)).toEqual([]);
      own.ws.send(JSON.stringify({ id, method: "subscription.stop" }));
      await own.answer(id, (f) => f.result?.type === "stopped");
    } finally {
      own.close();
    }
  });

  it("jobs.watch through the web client's own link: a TRPCClientError with code NOT_FOUND", async () => {
    // What the job page uses (app/_components/trpc.ts), with the API key instead of a cookie.
    class KeyedWebSocket extends WebSocket {
      constructor(url: string | URL) {
        super(url, { headers: auth(bob.apiKey) });
      }
    }
    const wsClient = createWSClient({ url: `${srv.url.replace(/^http/, "ws")}${TRPC_WS_PATH}`, WebSocket: KeyedWebSocket as unknown as typeof globalThis.WebSocket });
    const client = createTRPCClient<AppRouter>({ links: [wsLink({ client: wsClient })] });
    try {
      const error = await new Promise<unknown>((resolve) => {
        const sub = client.jobs.watch.subscribe({ id: alicesJob }, {
          onData: () => resolve(new Error("got someone else's job")),
          onError: (e) => {
            sub.unsubscribe();
            resolve(e);
          },
        });
      });
      expect(error).toBeInstanceOf(TRPCClientError);
      expect((error as TRPCClientError<AppRouter>).data?.code).toBe("NOT_FOUND");
      expect((error as TRPCClientError<AppRouter>).data).not.toHaveProperty("stack");
    } finally {
      await wsClient.close();
    }
  });

  it("an internal error in a call: a generic message, the details in the log", async () => {
    const s = await TrpcSocket.open(auth(alice.apiKey));
    try {
      const logged = srv.logs.length;
      // A job's snapshot reads its rounds: with their table gone, the subscription fails inside.
      const r = await withoutTable("JobRound", () => s.answer(s.send("subscription", "jobs.watch", { id: alicesJob }), (f) => !!f.error));
      expect(r.error).toMatchObject({ message: INTERNAL_ERROR_MESSAGE, data: { code: "INTERNAL_SERVER_ERROR" } });
      expect(JSON.stringify(r.error)).not.toMatch(/JobRound|no such table|does not exist|SQLITE|prisma/i);
      expect(srv.logs.slice(logged).join("\n")).toMatch(/jobs\.watch/);
    } finally {
      s.close();
    }
  });

  it("an internal error while making the connection's context: a generic message, then the socket closes", async () => {
    const logged = srv.logs.length;
    const s = await withoutTable("ApiKey", async () => {
      const socket = await TrpcSocket.open(auth(bob.apiKey));
      await socket.answer(null);
      return socket;
    });
    const r = await s.answer(null);
    expect(r.error).toMatchObject({ message: INTERNAL_ERROR_MESSAGE, data: { code: "INTERNAL_SERVER_ERROR" } });
    expect(r.error?.data).not.toHaveProperty("stack");
    expect(JSON.stringify(r.error)).not.toMatch(/ApiKey|does not exist|SQLITE|prisma/i);
    await waitFor(() => s.closed, 5000, "the socket to close");
    expect(srv.logs.slice(logged).join("\n")).toMatch(/ApiKey/);
  });

  it("a malformed session cookie gets no exception text back", async () => {
    const s = await TrpcSocket.open({ cookie: BAD_COOKIE });
    try {
      const id = s.send("subscription", "cluster.watch");
      await waitFor(() => s.closed || s.frames.some((f) => f.id === id), 5000, "an answer or the socket to close");
      expect(JSON.stringify(s.frames)).not.toMatch(/URI malformed/);
      for (const f of s.frames) if (f.error?.data.code === "INTERNAL_SERVER_ERROR") expect(f.error.message).toBe(INTERNAL_ERROR_MESSAGE);
    } finally {
      s.close();
    }
  });
});

describe("plain HTTP routes", () => {
  it("a handler that throws answers a generic 500 JSON, and the server carries on", async () => {
    const logged = srv.logs.length;
    const r = await withoutTable("AdCreative", () => httpGet(`/api/ads/media/${"a".repeat(64)}`));
    expect(r.status).toBe(500);
    expect(r.json).toEqual({ error: "Internal error" });
    expect(srv.logs.slice(logged).join("\n")).toMatch(/AdCreative/);
    // The same route with its table back: a plain 404.
    expect((await httpGet(`/api/ads/media/${"a".repeat(64)}`)).status).toBe(404);
    // A malformed cookie on a download: no exception text, whatever the status.
    const download = await httpGet(`/api/jobs/${alicesJob}/result.json`, { cookie: BAD_COOKIE });
    expect(download.text).not.toMatch(/URI malformed/);
    // Someone else's job: a plain 404.
    const other = await httpGet(`/api/jobs/${alicesJob}/result.json`, auth(bob.apiKey));
    expect(other.status).toBe(404);
    expect((await httpGet("/api/health")).status).toBe(200);
  });

  it("the volunteer socket's upgrade: a generic 500, not the exception", async () => {
    const upgrade = (header: string) => new Promise<string>((resolve, reject) => {
      const sock = net.connect(Number(new URL(srv.url).port), "127.0.0.1", () => {
        sock.write(
          `GET ${VOLUNTEER_WS_PATH} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${header}\r\n\r\n`,
        );
      });
      let out = "";
      sock.setEncoding("utf8").on("data", (d: string) => {
        out += d;
        // An accepted upgrade stays open: its status line is all this test needs.
        if (out.startsWith("HTTP/1.1 101")) sock.destroy();
      });
      sock.on("close", () => resolve(out));
      sock.on("error", reject);
    });
    const logged = srv.logs.length;
    const reply = await withoutTable("ApiKey", () => upgrade(`Authorization: Bearer ${bob.apiKey}`));
    expect(reply).toMatch(/^HTTP\/1\.1 500 /);
    expectNoSecrets(reply);
    expect(reply).not.toMatch(/ApiKey|does not exist|SQLITE|prisma/i);
    expect(srv.logs.slice(logged).join("\n")).toMatch(/ApiKey/);

    const cookie = await upgrade(`Cookie: ${BAD_COOKIE}`);
    expectNoSecrets(cookie);
    expect(cookie).not.toMatch(/URI malformed/);
  });

  it("/api/health names no database error, only that there is one", async () => {
    const failing = { $queryRawUnsafe: () => Promise.reject(new Error(`SQLITE_CANTOPEN: unable to open ${repoRoot}/data/tabgrid.db`)) } as unknown as Db;
    let status = 0;
    let body = "";
    const res = {
      writeHead: (s: number) => void (status = s),
      end: (b: string) => void (body = b),
    } as unknown as Parameters<typeof health>[3];
    const logs: string[] = [];
    const blobs = { kind: "directory" as const, check: async () => "ok" };
    await health(failing, startCluster({ log: () => {} }), blobs, res, (m) => logs.push(m));
    expect(status).toBe(503);
    expect(JSON.parse(body)).toMatchObject({ status: "error", database: "error" });
    expectNoSecrets(body);
    expect(body).not.toMatch(/SQLITE/);
    expect(logs.join("\n")).toMatch(/SQLITE_CANTOPEN/);
  });
});
