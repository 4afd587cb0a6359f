import { EventEmitter } from "node:events";
import type http from "node:http";
import { describe, expect, it } from "vitest";
import { createLoadGate } from "../../server/http/loadGate";
import { vouchFor } from "../../server/http/vouchedCallers";

// Who the gate sheds first when the loop is behind: callers that already have calls in
// progress (a flood) before a caller with none (a consumer submitting now and then).

/** A call with an API key the server has verified (identify() vouched for it), unless `madeUp`. */
function request(apiKey: string, madeUp = false, remoteAddress = "127.0.0.1"): http.IncomingMessage {
  const req = { method: "POST", headers: { authorization: `Bearer ${apiKey}` }, socket: { remoteAddress } } as unknown as http.IncomingMessage;
  if (!madeUp) vouchFor(req);
  return req;
}

class Response extends EventEmitter {
  status = 0;
  writeHead(status: number) {
    this.status = status;
    return this;
  }
  end() {
    return this;
  }
}

function gate(delayMs: number, utilization = 0.9, perCallerRate?: number, procedureCost?: Record<string, number>) {
  const loop = { delay: 0, utilization: () => utilization, current: () => loop.delay, stop: () => undefined };
  let draw = 0.5;
  const g = createLoadGate({
    delayMs, maxRequests: 256, maxPerCaller: 16, onShed: () => undefined, operator: () => false,
    random: () => draw, loop, perCallerRate, ...(procedureCost ? { procedureCost } : {}),
  });
  const call = (apiKey: string, path = "/api/trpc/jobs.submit", opts: { madeUp?: boolean; from?: string } = {}) => {
    const res = new Response();
    const req = request(apiKey, opts.madeUp, opts.from);
    const out = res as unknown as http.ServerResponse;
    // As server/app.ts does: a tRPC call with a body is counted once its body is read.
    const refused = g.shed(req, out, path) || (path.startsWith("/api/trpc/") && g.admit(req, out, path));
    // Answered or refused, the response closes (here at once unless the caller ends it).
    return { refused, status: res.status, end: () => res.emit("close") };
  };
  return { loop, call, setDraw: (x: number) => (draw = x), busy: g.busy };
}

describe("load gate", () => {
  it("sheds callers with calls in progress from the threshold on, and a lone caller only past twice it", () => {
    const { loop, call, setDraw } = gate(40);
    const flood = call("flooder"); // in progress: the flooder now has a call open
    expect(flood.refused).toBe(false);
    loop.delay = 60; // half way to twice the threshold: pressure 0.5
    setDraw(0.4);
    expect(call("flooder")).toMatchObject({ refused: true, status: 503 });
    expect(call("steady").refused).toBe(false); // its call is now in progress too
    loop.delay = 100; // 2.5 times the threshold: a lone caller is refused half the time
    expect(call("another").refused).toBe(true);
    setDraw(0.6);
    expect(call("yet-another").refused).toBe(false);
    loop.delay = 120; // three times: everyone
    setDraw(0.999);
    expect(call("a-lone-one").refused).toBe(true);
    flood.end();
  });

  it("sheds new volunteer sockets (no caller) from the threshold on, all at twice it", () => {
    const { loop, setDraw, busy } = gate(40);
    loop.delay = 40;
    setDraw(0);
    expect(busy()).toBe(false);
    loop.delay = 60;
    setDraw(0.4);
    expect(busy()).toBe(true);
    setDraw(0.6);
    expect(busy()).toBe(false);
    loop.delay = 80;
    setDraw(0.999);
    expect(busy()).toBe(true);
  });

  it("sheds nobody while the loop is not busy, however late one tick came", () => {
    const { loop, call, setDraw } = gate(40, 0.5);
    loop.delay = 400;
    setDraw(0);
    expect(call("flooder").refused).toBe(false);
  });

  it("counts a caller's call as in progress until its response closes", () => {
    const { loop, call, setDraw } = gate(40);
    const first = call("consumer");
    loop.delay = 60;
    setDraw(0.4);
    expect(call("consumer").refused).toBe(true);
    first.end();
    expect(call("consumer").refused).toBe(false);
  });

  it("answers a caller past its rate 429 before anything else, and another caller meanwhile", () => {
    const { call } = gate(0, 0, 5); // 5 a second, 10 at once
    const answers = Array.from({ length: 12 }, () => call("tight-loop"));
    answers.forEach((a) => a.end());
    expect(answers.filter((a) => !a.refused)).toHaveLength(10);
    expect(answers.filter((a) => a.refused).map((a) => a.status)).toEqual([429, 429]);
    expect(call("someone-else").refused).toBe(false);
  });

  it("counts a credential it has not verified as its address: a new made-up key each call is one caller", () => {
    const { call } = gate(0, 0, 5); // 5 a second, 10 at once
    const answers = Array.from({ length: 12 }, (_, i) => call(`made-up-${i}`, undefined, { madeUp: true }));
    answers.forEach((a) => a.end());
    expect(answers.filter((a) => a.refused).map((a) => a.status)).toEqual([429, 429]);
    // Another address, and a verified key from the same one, are callers of their own.
    expect(call("made-up-x", undefined, { madeUp: true, from: "192.0.2.7" }).refused).toBe(false);
    expect(call("verified").refused).toBe(false);
  });

  it("counts a costly procedure's call as several against the caller's rate", () => {
    const { call } = gate(0, 0, 5, { "jobs.estimate": 4 }); // 5 a second, 10 at once
    const answers = Array.from({ length: 3 }, () => call("estimator", "/api/trpc/jobs.estimate"));
    answers.forEach((a) => a.end());
    expect(answers.map((a) => a.refused)).toEqual([false, false, true]);
    // Two tokens left: ordinary calls still go through.
    expect(call("estimator", "/api/trpc/jobs.get").refused).toBe(false);
  });

  it("counts every call of a tRPC batch against the caller's rate", () => {
    const { call } = gate(0, 0, 5); // 5 a second, 10 at once
    const batch = "/api/trpc/jobs.estimate,jobs.estimate,jobs.estimate,jobs.estimate";
    const first = call("batcher", batch);
    const second = call("batcher", batch);
    const third = call("batcher", batch); // 12 calls asked, 2 tokens left
    [first, second, third].forEach((a) => a.end());
    expect([first.refused, second.refused, third.refused]).toEqual([false, false, true]);
    expect(third.status).toBe(429);
    // The two tokens left still serve single calls.
    expect(call("batcher", "/api/trpc/jobs.estimate").refused).toBe(false);
  });
});
