import { EventEmitter } from "node:events";
import type { WebSocket } from "ws";
import { describe, expect, it } from "vitest";
import {
  endedSubscription,
  guardTrpcSocket,
  judgeTrpcFrame,
  MAX_TRPC_SOCKETS_PER_ADDRESS,
  MAX_TRPC_SUBSCRIPTIONS,
  MAX_TRPC_SUBSCRIPTIONS_PER_ADDRESS,
  MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET,
  TrpcSocketBudget,
} from "../../server/http/trpcSocketGuard";

const sub = (id: unknown) => JSON.stringify({ id, method: "subscription", params: { path: "cluster.watch" } });
const stop = (id: unknown) => JSON.stringify({ id, method: "subscription.stop" });
type Open = Parameters<typeof judgeTrpcFrame>[1];

describe("TrpcSocketBudget", () => {
  it("counts sockets per IPv4 address and per IPv6 /48, and frees a place once", () => {
    const budget = new TrpcSocketBudget();
    const releases = Array.from({ length: MAX_TRPC_SOCKETS_PER_ADDRESS }, (_, i) => budget.admit(`2001:db8:1:${i.toString(16)}::1`));
    expect(releases.every(Boolean)).toBe(true);
    // Another address of the same /48 (another /64 of it too): full; of another /48, or an IPv4 address: room.
    expect(budget.admit("2001:db8:1:ffff::1")).toBeUndefined();
    expect(budget.admit("2001:db8:2::1")).toBeDefined();
    expect(budget.admit("192.0.2.7")).toBeDefined();
    releases[0]!();
    releases[0]!();
    expect(budget.admit("2001:db8:1:2::99")).toBeDefined();
    expect(budget.admit("2001:db8:1:2::98")).toBeUndefined();
  });

  it("hands the address it let in to the socket guarded next, once", () => {
    const budget = new TrpcSocketBudget();
    budget.admit("192.0.2.8");
    expect(budget.arrived()).toBe("192.0.2.8");
    expect(budget.arrived()).toBeUndefined();
  });

  it("refuses a subscription past the server's total, and an id already open", () => {
    const budget = new TrpcSocketBudget();
    budget.subscriptions = MAX_TRPC_SUBSCRIPTIONS - 1;
    const open: Open = new Map();
    expect(judgeTrpcFrame(sub(1), open, budget, "192.0.2.1")).toBeUndefined();
    expect(budget.subscriptions).toBe(MAX_TRPC_SUBSCRIPTIONS);
    // The same id again: tRPC would answer it with an error under that id, as if the first had ended.
    expect(judgeTrpcFrame(sub(1), open, budget, "192.0.2.1")).toMatch(/already open/);
    expect(budget.subscriptions).toBe(MAX_TRPC_SUBSCRIPTIONS);
    expect(judgeTrpcFrame(sub(2), new Map(), budget, "192.0.2.2")).toMatch(/all the subscriptions it can hold/);
    // A stop is let through but gives nothing back: the server's "stopped" does.
    expect(judgeTrpcFrame(stop(1), open, budget, "192.0.2.1")).toBeUndefined();
    expect(budget.subscriptions).toBe(MAX_TRPC_SUBSCRIPTIONS);
    open.get(1)!();
    open.get(1)!();
    expect(budget.subscriptions).toBe(MAX_TRPC_SUBSCRIPTIONS - 1);
    expect(judgeTrpcFrame(sub(2), new Map(), budget, "192.0.2.2")).toBeUndefined();
  });

  it(`holds ${MAX_TRPC_SUBSCRIPTIONS_PER_ADDRESS} subscriptions of one address (an IPv6 /48) across its sockets`, () => {
    const budget = new TrpcSocketBudget();
    const sockets = Array.from({ length: MAX_TRPC_SUBSCRIPTIONS_PER_ADDRESS / MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET }, () => new Map() as Open);
    sockets.forEach((open, s) => {
      for (let i = 0; i < MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET; i++) expect(judgeTrpcFrame(sub(i), open, budget, `2001:db8:5:${s}::1`)).toBeUndefined();
    });
    expect(judgeTrpcFrame(sub(1), new Map(), budget, "2001:db8:5:ffff::2")).toMatch(/subscriptions from your network address/);
    expect(judgeTrpcFrame(sub(1), new Map(), budget, "2001:db8:6::1")).toBeUndefined();
    sockets[0]!.get(0)!();
    expect(judgeTrpcFrame(sub(1), new Map(), budget, "2001:db8:5::3")).toBeUndefined();
    expect(budget.subscriptions).toBe(MAX_TRPC_SUBSCRIPTIONS_PER_ADDRESS + 1);
  });
});

describe("endedSubscription", () => {
  it("reads the id of tRPC's stopped and error answers, and of nothing else", () => {
    expect(endedSubscription(JSON.stringify({ id: 7, result: { type: "stopped" } }))).toEqual({ id: 7 });
    expect(endedSubscription(JSON.stringify({ id: "a-1", jsonrpc: "2.0", result: { type: "stopped" } }))).toEqual({ id: "a-1" });
    expect(endedSubscription(JSON.stringify({ id: 3, error: { message: "UNAUTHORIZED", code: -32001, data: {} } }))).toEqual({ id: 3 });
    expect(endedSubscription(JSON.stringify({ id: null, error: { message: "`id` is required" } }))).toEqual({ id: null });
    expect(endedSubscription(JSON.stringify({ id: 1.5e300, error: {} }))).toEqual({ id: 1.5e300 });
    for (const frame of [
      JSON.stringify({ id: 7, result: { type: "started" } }),
      JSON.stringify({ id: 7, result: { type: "data", data: { result: { type: "stopped" } } } }),
      JSON.stringify({ id: 7, result: { type: "data", data: '"result":{"type":"stopped"}}' } }),
      JSON.stringify({ id: 7, result: { type: "data", data: { error: 1 } } }),
      JSON.stringify({ id: null, method: "reconnect" }),
      "PING",
      "PONG",
    ]) {
      expect(endedSubscription(frame), frame).toBeUndefined();
    }
  });
});

/** A stand-in for ws's WebSocket: what the guard uses of one. */
function fakeSocket() {
  const sent: unknown[] = [];
  const ws = Object.assign(new EventEmitter(), {
    OPEN: 1,
    readyState: 1,
    closedWith: undefined as string | undefined,
    send(data: unknown) {
      sent.push(data);
    },
    close(_code: number, reason: string) {
      ws.closedWith = reason;
      ws.readyState = 3;
    },
  });
  return { ws, sent, frame: (data: string) => ws.emit("message", Buffer.from(data), false) };
}

describe("guardTrpcSocket", () => {
  it("gives a subscription's place back once when the server ends it, and the rest when the socket closes", () => {
    const budget = new TrpcSocketBudget();
    budget.admit("192.0.2.9");
    const { ws, sent, frame } = fakeSocket();
    guardTrpcSocket(ws as unknown as WebSocket, budget);
    const seen: string[] = [];
    ws.on("message", (raw: Buffer) => seen.push(raw.toString()));
    const send = (answer: unknown) => (ws as unknown as WebSocket).send(JSON.stringify(answer));

    frame(JSON.stringify([1, 2, 3, 4].map((id) => JSON.parse(sub(id)))));
    expect(budget.subscriptions).toBe(4);
    // Refused before it started; failed after it started (an error, then "stopped"); completed.
    send({ id: 1, error: { message: "UNAUTHORIZED" } });
    send({ id: 2, result: { type: "started" } });
    send({ id: 2, result: { type: "data", data: {} } });
    send({ id: 2, error: { message: "NOT_FOUND" } });
    send({ id: 2, result: { type: "stopped" } });
    send({ id: 3, result: { type: "stopped" } });
    expect(budget.subscriptions).toBe(1);
    expect(sent).toHaveLength(6);
    // An ended id may be asked for again; a stop alone gives nothing back.
    frame(sub(1));
    frame(stop(4));
    expect(budget.subscriptions).toBe(2);
    expect(seen).toHaveLength(3);
    expect(ws.closedWith).toBeUndefined();

    ws.emit("close");
    expect(budget.subscriptions).toBe(0);
    // tRPC's answers to the subscriptions it aborts come after the close: nothing more to give back.
    send({ id: 4, result: { type: "stopped" } });
    send({ id: 1, result: { type: "stopped" } });
    expect(budget.subscriptions).toBe(0);
  });

  it(`closes a socket that asks for more than ${MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET} the server has not ended`, () => {
    const budget = new TrpcSocketBudget();
    const { ws, frame } = fakeSocket();
    guardTrpcSocket(ws as unknown as WebSocket, budget, "192.0.2.10");
    const batch = (from: number) => JSON.stringify(Array.from({ length: 16 }, (_, i) => JSON.parse(sub(from + i))));
    frame(batch(0));
    frame(batch(16));
    (ws as unknown as WebSocket).send(JSON.stringify({ id: 0, error: {} }));
    frame(sub(99));
    expect(ws.closedWith).toBeUndefined();
    frame(sub(100));
    expect(ws.closedWith).toMatch(/more than 32 subscriptions on one socket/);
  });
});
