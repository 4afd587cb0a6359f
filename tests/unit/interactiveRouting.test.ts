import { describe, expect, it } from "vitest";
import {
  chooseTwo, InteractiveError, InteractiveRouter, loadScore, pickPair, type InteractiveCandidate, type InteractiveHost,
} from "../../server/coordinator/interactive";
import type { ServerMessage } from "../../worker/protocol/messages";
import { runInteractive } from "../../worker/interactive";
import { RateLimiter } from "../../server/services/calc/rateLimit";
import { seededRandom } from "../helpers/random";


/** Replays the given numbers, then repeats the last. */
function scripted(...values: number[]) {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)];
}

type Interactive = Extract<ServerMessage, { type: "interactive" }>;

/** A coordinator stand-in: volunteers that answer with `behaviour`, or stay silent. */
class FakeHost implements InteractiveHost {
  volunteers: InteractiveCandidate[] = [];
  leasedBy = new Map<string, number>();
  sent: Array<{ key: string; msg: Interactive }> = [];
  behaviour = new Map<string, "answer" | "silent" | "gone">();
  router!: InteractiveRouter;

  add(key: string, threads = 1, behaviour: "answer" | "silent" | "gone" = "answer") {
    this.volunteers.push({ key, volunteerId: `vol-${key}`, threads });
    this.behaviour.set(key, behaviour);
  }
  candidates() {
    return this.volunteers;
  }
  leased(key: string) {
    return this.leasedBy.get(key) ?? 0;
  }
  send(key: string, msg: ServerMessage) {
    if (msg.type !== "interactive") throw new Error(`unexpected ${msg.type}`);
    const b = this.behaviour.get(key);
    if (b === "gone") return false;
    this.sent.push({ key, msg });
    if (b === "answer") {
      // A real volunteer: evaluates and answers on a later turn.
      setTimeout(() => {
        try {
          const r = runInteractive(msg.kernel, msg.input);
          this.router.answer(key, { type: "interactive-result", id: msg.id, value: r.value, ops: r.ops });
        } catch (e) {
          this.router.answer(key, { type: "interactive-result", id: msg.id, error: (e as Error).message });
        }
      }, 1);
    }
    return true;
  }
  count(key: string) {
    return this.sent.filter((s) => s.key === key).length;
  }
}

function setup(opts: { random?: () => number; timeoutMs?: number } = {}) {
  const host = new FakeHost();
  const router = new InteractiveRouter(host, { random: opts.random ?? seededRandom(1), timeoutMs: opts.timeoutMs ?? 1000 });
  host.router = router;
  return { host, router };
}

const calc = (expression: string) => ({ expression });

describe("power of two choices", () => {
  it("never names the same volunteer twice in a pair, whatever the random draws", () => {
    // Equal draws, extreme draws, and a random sample, over small and larger pools.
    for (const n of [2, 3, 10]) {
      for (const draws of [[0, 0], [0.9999999, 0.9999999], [1, 1], [0.5, 0.5], [0, 0.9999]]) {
        const [i, j] = pickPair(n, scripted(...draws));
        expect(i).not.toBe(j);
        expect(i).toBeGreaterThanOrEqual(0);
        expect(j).toBeGreaterThanOrEqual(0);
        expect(Math.max(i, j)).toBeLessThan(n);
      }
      const random = seededRandom(n);
      for (let k = 0; k < 2000; k++) {
        const [i, j] = pickPair(n, random);
        expect(i).not.toBe(j);
      }
    }
  });

  it("draws pairs uniformly: every volunteer is offered about as often", () => {
    const random = seededRandom(7);
    const offered = new Array(5).fill(0);
    for (let k = 0; k < 10_000; k++) for (const i of pickPair(5, random)) offered[i]++;
    for (const c of offered) expect(Math.abs(c - 4000)).toBeLessThan(250);
  });

  it("chooses the lower score of the pair, whichever way round it was drawn", () => {
    const items = ["a", "b", "c"];
    const scores: Record<string, number> = { a: 0.9, b: 0.1, c: 0.5 };
    // (a, b) and (b, a): both pick b.
    expect(chooseTwo(items, (x) => scores[x], scripted(0, 0))).toBe("b");
    expect(chooseTwo(items, (x) => scores[x], scripted(0.5, 0))).toBe("b");
    // (a, c): c — the global minimum b is not in this pair, and P2C does not look past it.
    expect(chooseTwo(items, (x) => scores[x], scripted(0, 0.9))).toBe("c");
    expect(chooseTwo([], () => 0, Math.random)).toBeUndefined();
    expect(chooseTwo(["only"], () => 0, Math.random)).toBe("only");
  });

  it("scores reported CPU plus this server's leased and interactive counts per thread", () => {
    expect(loadScore(0.5, 0, 0, 4)).toBe(0.5);
    expect(loadScore(0.2, 4, 2, 4)).toBe(1.7);
    expect(loadScore(0, 3, 0, 0)).toBe(3); // paused: per max(1, threads)
  });

  it("picks the less loaded of two volunteers every time, from their reports and leases", () => {
    const { host, router } = setup({ random: seededRandom(3) });
    host.add("busy", 2);
    host.add("idle", 2);
    router.report("busy", { cpu: 0.9, inFlight: 0 });
    router.report("idle", { cpu: 0.1, inFlight: 0 });
    for (let k = 0; k < 20; k++) expect(router.pick()?.key).toBe("idle");
    // The idle one's report is stale: the scheduler has since leased it 4 tasks (2 per thread).
    host.leasedBy.set("idle", 4);
    expect(router.score(host.volunteers[1])).toBeCloseTo(2.1);
    for (let k = 0; k < 20; k++) expect(router.pick()?.key).toBe("busy");
  });

  it("skips paused volunteers (0 threads) and the ones already tried", () => {
    const { host, router } = setup();
    host.add("paused", 0);
    host.add("a", 1);
    for (let k = 0; k < 10; k++) expect(router.pick()?.key).toBe("a");
    expect(router.pick(new Set(["a"]))).toBeUndefined();
  });

  it("spreads a burst over equal stale reports instead of herding (100 picks, 10 volunteers)", async () => {
    const { host, router } = setup({ random: seededRandom(42), timeoutMs: 60_000 });
    for (let i = 0; i < 10; i++) {
      host.add(`v${i}`, 1, "silent");
      router.report(`v${i}`, { cpu: 0.3, inFlight: 0 });
    }
    // Back to back, before any answer or new report: only the server's own counts move.
    const calls = Array.from({ length: 100 }, () => router.run("calc", calc("1+1")).catch((e: Error) => e));
    const counts = host.volunteers.map((v) => host.count(v.key));
    expect(counts.reduce((a, b) => a + b)).toBe(100);
    console.log(`burst over equal reports: ${counts.join(" ")}`);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(3);
    router.close();
    for (const r of await Promise.all(calls)) expect((r as InteractiveError).code).toBe("closed");
  });

  it("does not herd onto one stale minimum either", async () => {
    const { host, router } = setup({ random: seededRandom(9), timeoutMs: 60_000 });
    for (let i = 0; i < 10; i++) {
      host.add(`v${i}`, 1, "silent");
      // v0 reported the lowest load once and has not reported since.
      router.report(`v${i}`, { cpu: i === 0 ? 0 : 0.5, inFlight: 0 });
    }
    const calls = Array.from({ length: 100 }, () => router.run("calc", calc("1+1")).catch(() => undefined));
    const counts = host.volunteers.map((v) => host.count(v.key));
    console.log(`burst with one stale minimum: ${counts.join(" ")}`);
    // Without the in-flight counts v0 would win every pair it is in (about 20 of 100).
    expect(counts[0]).toBeLessThanOrEqual(12);
    expect(Math.min(...counts.slice(1))).toBeGreaterThanOrEqual(8);
    router.close();
    await Promise.all(calls);
  });
});

describe("interactive router", () => {
  it("routes, answers with the volunteer's value and ops, and clears its in-flight count", async () => {
    const { host, router } = setup();
    host.add("a", 1);
    const r = await router.run("calc", calc("2*(3+4)/5"));
    expect(r).toMatchObject({ value: 2.8, ops: ["3 + 4 = 7", "2 * 7 = 14", "14 / 5 = 2.8"], volunteerId: "vol-a", attempts: 1 });
    expect(r.ms).toBeGreaterThanOrEqual(0);
    expect(host.sent[0].msg).toMatchObject({ type: "interactive", kernel: "calc", input: { expression: "2*(3+4)/5" } });
    expect(router.interactiveInFlight("a")).toBe(0);
  });

  it("says so clearly when no volunteer is connected (or all are paused)", async () => {
    const { host, router } = setup();
    await expect(router.run("calc", calc("1"))).rejects.toMatchObject({ code: "no-volunteers", message: expect.stringMatching(/no volunteers are connected/) });
    host.add("paused", 0);
    await expect(router.run("calc", calc("1"))).rejects.toMatchObject({ code: "no-volunteers" });
  });

  it("retries once on another volunteer when the first does not answer in time", async () => {
    const { host, router } = setup({ timeoutMs: 100 });
    host.add("silent", 1, "silent");
    host.add("good", 1);
    router.report("silent", { cpu: 0, inFlight: 0 });
    router.report("good", { cpu: 0.8, inFlight: 0 });
    const started = performance.now();
    const r = await router.run("calc", calc("6*7"));
    expect(r).toMatchObject({ value: 42, volunteerId: "vol-good", attempts: 2 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(95);
    expect(host.sent.map((s) => s.key)).toEqual(["silent", "good"]);
    expect(router.interactiveInFlight("silent")).toBe(0);
  });

  it("gives up after two silent volunteers with a clear error, without asking a third", async () => {
    const { host, router } = setup({ timeoutMs: 50 });
    for (const k of ["s1", "s2", "s3"]) host.add(k, 1, "silent");
    const e = (await router.run("calc", calc("1+1")).catch((x: unknown) => x)) as InteractiveError;
    expect(e).toBeInstanceOf(InteractiveError);
    expect(e.code).toBe("timeout");
    expect(e.message).toMatch(/^no volunteer answered \(asked 2 volunteers, 50 ms each/);
    expect(host.sent).toHaveLength(2);
    expect(new Set(host.sent.map((s) => s.key)).size).toBe(2);
  });

  it("moves on at once when the volunteer disconnects, not after the timeout", async () => {
    const { host, router } = setup({ timeoutMs: 30_000 });
    host.add("leaving", 1, "silent");
    host.add("good", 1);
    router.report("good", { cpu: 1, inFlight: 0 });
    const started = performance.now();
    const call = router.run("calc", calc("1+2"));
    expect(host.sent[0].key).toBe("leaving");
    router.forget("leaving");
    await expect(call).resolves.toMatchObject({ value: 3, volunteerId: "vol-good", attempts: 2 });
    expect(performance.now() - started).toBeLessThan(1000);
    // A socket that is already closed counts as a failed attempt too.
    host.behaviour.set("leaving", "gone");
    router.report("good", { cpu: 1, inFlight: 0 });
    await expect(router.run("calc", calc("2+2"))).resolves.toMatchObject({ value: 4, volunteerId: "vol-good" });
  });

  it("passes the volunteer's error on without retrying (division by zero is not a fault)", async () => {
    const { host, router } = setup();
    host.add("a", 1);
    host.add("b", 1);
    await expect(router.run("calc", calc("1/0"))).rejects.toMatchObject({ code: "evaluation", message: "division by zero in 1 / 0" });
    expect(host.sent).toHaveLength(1);
  });

  it("ignores answers from a volunteer that was not asked, and malformed answers count as no answer", async () => {
    const { host, router } = setup({ timeoutMs: 100 });
    host.add("asked", 1, "silent");
    host.add("other", 1, "silent");
    router.report("other", { cpu: 1, inFlight: 0 });
    const call = router.run("calc", calc("1+1"));
    const { id } = host.sent[0].msg;
    router.answer("other", { type: "interactive-result", id, value: 999 });
    router.answer("asked", { type: "interactive-result", id, value: "two" });
    // The malformed answer sends it on to "other" at once (well before the 100 ms timeout).
    await new Promise((r) => setImmediate(r));
    expect(host.sent[1]?.key).toBe("other");
    router.answer("other", { type: "interactive-result", id: host.sent[1].msg.id, value: 2, ops: ["1 + 1 = 2"] });
    await expect(call).resolves.toMatchObject({ value: 2, volunteerId: "vol-other", attempts: 2 });
  });
});

describe("calc rate limit", () => {
  it("allows a burst per caller, then refills at the steady rate", () => {
    let now = 0;
    const limit = new RateLimiter(10, 5, () => now);
    for (let i = 0; i < 5; i++) expect(limit.take("alice")).toBe(true);
    expect(limit.take("alice")).toBe(false);
    expect(limit.take("bob")).toBe(true); // callers are counted apart
    now += 100; // 10 per second: one more token
    expect(limit.take("alice")).toBe(true);
    expect(limit.take("alice")).toBe(false);
    now += 60_000; // never more than the burst
    for (let i = 0; i < 5; i++) expect(limit.take("alice")).toBe(true);
    expect(limit.take("alice")).toBe(false);
  });
});
