import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TRPC_WS_PATH } from "../../server/app";
import { MAX_TRPC_BATCH } from "../../server/api/batch";
import { MAX_TRPC_SUBSCRIPTIONS_PER_ADDRESS, MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET } from "../../server/http/trpcSocketGuard";
import { createUserWithKey, startTestServer, waitFor, type TestServer } from "../helpers/server";

// An outside attack: 18 addresses of 32 tRPC sockets, each asking for 32 anonymous jobs.watch
// that the server refuses at once, held every subscription the server may hold, and a
// signed-in user's cluster.watch was closed with 1008. A subscription the server has ended no
// longer counts, and one address holds at most MAX_TRPC_SUBSCRIPTIONS_PER_ADDRESS. Sockets
// come from several loopback addresses (127.0.0.x) to stand for several clients.

let srv: TestServer;

beforeAll(async () => {
  srv = await startTestServer();
});

afterAll(async () => {
  await srv?.close();
});

type Frame = { id: number | null; error?: { message: string; data?: { code: string } }; result?: { type: string; data?: unknown } };

/** A raw tRPC WebSocket from one local address, recording every frame it receives. */
class TrpcSocket {
  readonly frames: Frame[] = [];
  closedWith: { code: number; reason: string } | undefined;
  private nextId = 1;
  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      const text = data.toString();
      if (text !== "PING" && text !== "PONG") this.frames.push(JSON.parse(text));
    });
    ws.on("close", (code, reason) => (this.closedWith = { code, reason: reason.toString() }));
    ws.on("error", () => {});
  }

  static async open(from: string, headers: Record<string, string> = {}) {
    const ws = new WebSocket(`${srv.url.replace(/^http/, "ws")}${TRPC_WS_PATH}`, { headers, localAddress: from });
    const socket = new TrpcSocket(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return socket;
  }

  /** Asks for `count` subscriptions of `path` in one frame; their ids. */
  subscribe(path: string, count: number, input?: unknown): number[] {
    const ids = Array.from({ length: count }, () => this.nextId++);
    this.ws.send(JSON.stringify(ids.map((id) => ({ id, method: "subscription", params: { path, input } }))));
    return ids;
  }

  stop(ids: number[]) {
    this.ws.send(JSON.stringify(ids.map((id) => ({ id, method: "subscription.stop" }))));
  }

  /** Waits for a frame answering each id that matches. */
  async answers(ids: number[], match: (f: Frame) => boolean, what: string) {
    await waitFor(() => ids.every((id) => this.frames.some((f) => f.id === id && match(f))) || this.closedWith, 10_000, what);
    expect(this.closedWith, what).toBeUndefined();
  }

  close() {
    this.ws.close();
  }

  async closed() {
    this.ws.close();
    await waitFor(() => this.closedWith, 5000, "the socket to close");
  }
}

const snapshot = (f: Frame) => f.result?.type === "data";
const failed = (f: Frame) => !!f.error;

describe("subscriptions on tRPC's WebSocket", () => {
  it("a subscription the server ended gives its place back: many times the per-socket cap over time, and a live one still works", async () => {
    const anonymous = await TrpcSocket.open("127.0.0.2");
    const { apiKey } = await createUserWithKey(srv.deps, "watcher@example.com");
    const signedIn = await TrpcSocket.open("127.0.0.2", { authorization: `Bearer ${apiKey}` });
    try {
      // Refused before they start (not signed in), as the attack's were: four times the cap.
      for (let round = 0; round < (4 * MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET) / MAX_TRPC_BATCH; round++) {
        const ids = anonymous.subscribe("jobs.watch", MAX_TRPC_BATCH, { id: "no-such-job" });
        await anonymous.answers(ids, failed, `round ${round}: every watch refused`);
      }
      expect(anonymous.frames.filter(failed).every((f) => f.error?.data?.code === "UNAUTHORIZED")).toBe(true);
      const live = anonymous.subscribe("cluster.watch", 1);
      await anonymous.answers(live, snapshot, "a snapshot after the refused ones");

      // Failed after they started (no such job: an error, then "stopped"), and stopped by the
      // client (the server's "stopped" gives the place back): twice the cap of each.
      for (let round = 0; round < (2 * MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET) / MAX_TRPC_BATCH; round++) {
        const missing = signedIn.subscribe("jobs.watch", MAX_TRPC_BATCH, { id: "no-such-job" });
        await signedIn.answers(missing, failed, `round ${round}: every watch of a missing job failed`);
        const watched = signedIn.subscribe("cluster.watch", MAX_TRPC_BATCH);
        await signedIn.answers(watched, snapshot, `round ${round}: every cluster snapshot`);
        signedIn.stop(watched);
        await signedIn.answers(watched, (f) => f.result?.type === "stopped", `round ${round}: every stop answered`);
      }
      // Room for the socket's whole cap, live at once.
      const held = [...signedIn.subscribe("cluster.watch", MAX_TRPC_BATCH), ...signedIn.subscribe("cluster.watch", MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET - MAX_TRPC_BATCH)];
      await signedIn.answers(held, snapshot, "a snapshot for each of the socket's cap");
    } finally {
      anonymous.close();
      signedIn.close();
    }
  });

  it(`one address holds at most ${MAX_TRPC_SUBSCRIPTIONS_PER_ADDRESS} subscriptions across its sockets; another address is not affected`, async () => {
    const from = "127.0.0.3";
    const sockets: TrpcSocket[] = [];
    const others: TrpcSocket[] = [];
    try {
      // The address's fill, a socket's cap at a time: each of them served.
      while (sockets.length * MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET < MAX_TRPC_SUBSCRIPTIONS_PER_ADDRESS) {
        const s = await TrpcSocket.open(from);
        sockets.push(s);
        const ids = [...s.subscribe("cluster.watch", MAX_TRPC_BATCH), ...s.subscribe("cluster.watch", MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET - MAX_TRPC_BATCH)];
        await s.answers(ids, snapshot, `socket ${sockets.length}: a snapshot for each subscription`);
      }
      // One more from the same address: its socket is closed, and nothing of it ran.
      const over = await TrpcSocket.open(from);
      sockets.push(over);
      over.subscribe("cluster.watch", 1);
      await waitFor(() => over.closedWith, 5000, "the socket over the address's fill to close");
      expect(over.closedWith).toEqual({ code: 1008, reason: expect.stringMatching(/subscriptions from your network address/) });
      expect(over.frames.filter((f) => f.id !== null)).toEqual([]);

      // Another address (a signed-in user elsewhere) is served.
      const { apiKey } = await createUserWithKey(srv.deps, "elsewhere@example.com");
      const other = await TrpcSocket.open("127.0.0.4", { authorization: `Bearer ${apiKey}` });
      others.push(other);
      await other.answers(other.subscribe("cluster.watch", 1), snapshot, "a snapshot for another address");

      // A socket of the address closed, its places are free again.
      await sockets.shift()!.closed();
      await waitFor(async () => {
        const s = await TrpcSocket.open(from);
        others.push(s);
        const [id] = s.subscribe("cluster.watch", 1);
        await waitFor(() => s.frames.some((f) => f.id === id && snapshot(f)) || s.closedWith, 5000, "an answer");
        return !s.closedWith;
      }, 5000, "the closed socket's places to be free");
    } finally {
      for (const s of [...sockets, ...others]) s.close();
    }
  });
});
