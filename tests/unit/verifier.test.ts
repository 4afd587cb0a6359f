import { afterEach, describe, expect, it } from "vitest";
import { MAX_CHECK_WORK_MS, Verifier } from "../../server/coordinator/verifier";
import { runTask } from "../../worker/runtime/runTask";
import { getKernel } from "../../worker/kernels";
import { mandelbrotParams } from "../../worker/kernels/mandelbrot";

// The server's spot-checks run on one kernel thread, sent in batches: the first alone, what
// queued meanwhile together. A batch over its time limit is sent again one check at a time.
// A tiny unit's check runs on the event loop instead, a millisecond of them a turn.

const pi = (seed: number, samples = 1000) => ({ kernel: "pi", params: { samples, seed }, input: { seed, samples } });

let verifier: Verifier | undefined;
afterEach(() => verifier?.close());

describe("Verifier", () => {
  it("answers many checks at once in a few messages, each with the kernel's own output", async () => {
    verifier = new Verifier();
    const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => verifier!.recompute("pi", pi(i).params, pi(i).input)));
    for (let i = 0; i < 100; i++) expect(answers[i].output).toEqual((await runTask(pi(i))).output);
    expect(verifier.checks).toBe(100);
    // The first alone, then batches of at most 64.
    expect(verifier.batches).toBeGreaterThanOrEqual(3);
    expect(verifier.batches).toBeLessThanOrEqual(4);
  });

  it("does not recompute a unit estimated over MAX_CHECK_WORK_MS: its thread stays free for the others", async () => {
    verifier = new Verifier();
    const huge = pi(1, 6e9); // ~30 s of reference work
    await expect(verifier.recompute("pi", huge.params, huge.input, { work: MAX_CHECK_WORK_MS + 1 })).rejects.toThrow(
      "the unit is estimated at 5.0 s of work, more than the server recomputes (5 s)",
    );
    expect(verifier.checks).toBe(0);
    expect((await verifier.recompute("pi", pi(2).params, pi(2).input, { work: 2 })).output).toEqual((await runTask(pi(2))).output);
  });

  it("fails a check that cannot run on its own, not the rest of its batch", async () => {
    verifier = new Verifier();
    const checks = [pi(1), { kernel: "pi", params: { samples: 5 }, input: { seed: 2, samples: 5 } }, pi(3)].map((t) =>
      verifier!.recompute(t.kernel, t.params, t.input).then((r) => r.output, (e: Error) => e),
    );
    const [a, bad, c] = await Promise.all(checks);
    expect(a).toEqual((await runTask(pi(1))).output);
    expect(bad).toBeInstanceOf(Error);
    expect(c).toEqual((await runTask(pi(3))).output);
  });

  it("sends a batch over its time limit again one check at a time: only the slow one fails", async () => {
    verifier = new Verifier(1500);
    await verifier.recompute("pi", pi(0).params, pi(0).input); // the thread is up; what follows queues behind one in flight
    const slow = pi(7, 1e11);
    const started = [verifier.recompute("pi", pi(1).params, pi(1).input)];
    const rest = [slow, pi(2), pi(3)].map((t) => verifier!.recompute(t.kernel, t.params, t.input).then((r) => r.output, (e: Error) => e));
    await Promise.all(started);
    const [slowAnswer, two, three] = await Promise.all(rest);
    expect(slowAnswer).toBeInstanceOf(Error);
    expect((slowAnswer as Error).message).toMatch(/time limit of 1.5 s exceeded/);
    expect(two).toEqual((await runTask(pi(2))).output);
    expect(three).toEqual((await runTask(pi(3))).output);
  }, 20_000);

  it("gives a check ten times its unit's estimate (at least 2 s), not the whole limit: an underestimated unit cannot hold the thread", async () => {
    verifier = new Verifier();
    await verifier.recompute("pi", pi(0).params, pi(0).input);
    // ~10 minutes of work claimed to be 100 ms: given up after 2 s, not 30.
    const liar = pi(7, 1e11);
    const started = performance.now();
    await expect(verifier.recompute("pi", liar.params, liar.input, { work: 100 })).rejects.toThrow(/time limit of 2 s exceeded/);
    expect(performance.now() - started).toBeLessThan(6000);
    expect((await verifier.recompute("pi", pi(2).params, pi(2).input, { work: 2 })).output).toEqual((await runTask(pi(2))).output);
  }, 20_000);

  it("drops, unrun, a queued check whose job ended before its turn", async () => {
    verifier = new Verifier();
    await verifier.recompute("pi", pi(0).params, pi(0).input);
    let ended = false;
    // One in flight; the next two queue behind it, one of them for a job that ends meanwhile.
    const first = verifier.recompute("pi", pi(1, 2e7).params, pi(1, 2e7).input, { work: 100 });
    const dropped = verifier.recompute("pi", pi(2).params, pi(2).input, { work: 2, stale: () => ended }).then(() => "ran", (e: Error) => e.message);
    const kept = verifier.recompute("pi", pi(3).params, pi(3).input, { work: 2, stale: () => false });
    ended = true;
    await first;
    expect(await dropped).toBe("its job ended before its turn");
    expect((await kept).output).toEqual((await runTask(pi(3))).output);
    // The warm-up, the first, and the kept one's batch: the dropped one never reached the thread.
    expect(verifier.batches).toBe(3);
  }, 20_000);

  it("lets owners take turns: a stranger's queued slow checks do not hold another owner's behind them all", async () => {
    verifier = new Verifier(1000);
    await verifier.recompute("pi", pi(0).params, pi(0).input);
    const order: string[] = [];
    const note = (name: string) => () => order.push(name);
    // Units far slower than their estimate: each fails its batch's time limit, then its own.
    const slow = (seed: number) => pi(seed, 1e9);
    const stranger = [1, 2, 3].map((i) => verifier!.recompute("pi", slow(i).params, slow(i).input, { work: 5, owner: "stranger" }).then(note(`s${i}`), note(`s${i}`)));
    const newcomer = verifier.recompute("pi", pi(9).params, pi(9).input, { work: 5, owner: "newcomer" });
    void newcomer.then(note("n"));
    await Promise.all([...stranger, newcomer]);
    // s1 was in flight; then the stranger's batch (s2, s3) failed and went back to the end of
    // the line, after the newcomer. First come, first served, the newcomer came last.
    expect(order).toEqual(["s1", "n", "s2", "s3"]);
    expect((await newcomer).output).toEqual((await runTask(pi(9))).output);
  }, 30_000);

  it("checks a tiny unit on the event loop, up to a millisecond of them a turn, the rest on the thread", async () => {
    verifier = new Verifier();
    const tiny = 0.505; // pi's estimate for 1,000 samples (PI_MS_PER_UNIT + samples × PI_MS_PER_SAMPLE)
    const answers = await Promise.all(Array.from({ length: 300 }, (_, i) => verifier!.recompute("pi", pi(i).params, pi(i).input, { work: tiny })));
    for (let i = 0; i < 300; i++) expect(answers[i].output).toEqual((await runTask(pi(i))).output);
    // All asked in one turn: a millisecond's worth here, the rest in batches to the thread.
    expect(verifier.inline).toBeGreaterThan(0);
    expect(verifier.inline).toBeLessThan(300);
    expect(verifier.batches).toBeGreaterThan(0);
    // A later turn has its own millisecond.
    const before = { inline: verifier.inline, batches: verifier.batches };
    await new Promise((r) => setImmediate(r));
    await verifier.recompute("pi", pi(1).params, pi(1).input, { work: tiny });
    expect(verifier.inline).toBe(before.inline + 1);
    expect(verifier.batches).toBe(before.batches);
  });

  it("sends a unit estimated over a millisecond, or without an estimate, to the thread", async () => {
    verifier = new Verifier();
    await verifier.recompute("pi", pi(1).params, pi(1).input, { work: 5 });
    await verifier.recompute("pi", pi(2).params, pi(2).input);
    expect(verifier.inline).toBe(0);
    expect(verifier.batches).toBe(2);
  });

  it("never runs a kernel whose time its estimate does not bound on the event loop, however small the estimate", async () => {
    verifier = new Verifier();
    // A band inside a bulb of the set: every pixel runs to maxIter, tens of ms, checked with an
    // estimate under 1 ms (what a fit on maxIter alone gave such a band).
    const params = { width: 16, height: 4096, maxIter: 10_000, centerX: -0.1226, centerY: 0.7449, scale: 1e-6 };
    const unit = getKernel("mandelbrot")!.split(mandelbrotParams.parse(params), 51)[0]!;
    const answer = await verifier.recompute("mandelbrot", params, unit.input, { work: 0.9 });
    expect(answer.output).toEqual((await runTask({ kernel: "mandelbrot", params, input: unit.input })).output);
    expect(verifier.inline).toBe(0);
    expect(verifier.batches).toBe(1);
  });

  it("fails a tiny check that cannot run as the thread would", async () => {
    verifier = new Verifier();
    const bad = { kernel: "pi", params: { samples: 5 }, input: { seed: 2, samples: 5 } };
    const here = await verifier.recompute(bad.kernel, bad.params, bad.input, { work: 0.5 }).then(() => undefined, (e: Error) => e.message);
    const there = await verifier.recompute(bad.kernel, bad.params, bad.input).then(() => undefined, (e: Error) => e.message);
    expect(verifier.inline).toBe(1);
    expect(here).toBeDefined();
    expect(here).toBe(there);
  });

  it("refuses checks once closed, and settles those in flight", async () => {
    verifier = new Verifier();
    const inFlight = verifier.recompute("pi", pi(1, 1e9).params, pi(1, 1e9).input);
    verifier.close();
    await expect(inFlight).rejects.toThrow(/closed|exited/);
    await expect(verifier.recompute("pi", pi(2).params, pi(2).input)).rejects.toThrow(/closed/);
  });
});
