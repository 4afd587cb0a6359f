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
    await expect(verifier.recompute("pi", huge.params, huge.input, MAX_CHECK_WORK_MS + 1)).rejects.toThrow(
      "the unit is estimated at 5.0 s of work, more than the server recomputes (5 s)",
    );
    expect(verifier.checks).toBe(0);
    expect((await verifier.recompute("pi", pi(2).params, pi(2).input, 2)).output).toEqual((await runTask(pi(2))).output);
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

  it("checks a tiny unit on the event loop, up to a millisecond of them a turn, the rest on the thread", async () => {
    verifier = new Verifier();
    const tiny = 0.505; // pi's estimate for 1,000 samples (PI_MS_PER_UNIT + samples × PI_MS_PER_SAMPLE)
    const answers = await Promise.all(Array.from({ length: 300 }, (_, i) => verifier!.recompute("pi", pi(i).params, pi(i).input, tiny)));
    for (let i = 0; i < 300; i++) expect(answers[i].output).toEqual((await runTask(pi(i))).output);
    // All asked in one turn: a millisecond's worth here, the rest in batches to the thread.
    expect(verifier.inline).toBeGreaterThan(0);
    expect(verifier.inline).toBeLessThan(300);
    expect(verifier.batches).toBeGreaterThan(0);
    // A later turn has its own millisecond.
    const before = { inline: verifier.inline, batches: verifier.batches };
    await new Promise((r) => setImmediate(r));
    await verifier.recompute("pi", pi(1).params, pi(1).input, tiny);
    expect(verifier.inline).toBe(before.inline + 1);
    expect(verifier.batches).toBe(before.batches);
  });

  it("sends a unit estimated over a millisecond, or without an estimate, to the thread", async () => {
    verifier = new Verifier();
    await verifier.recompute("pi", pi(1).params, pi(1).input, 5);
    await verifier.recompute("pi", pi(2).params, pi(2).input);
    expect(verifier.inline).toBe(0);
    expect(verifier.batches).toBe(2);
  });

  it("never runs a kernel whose time its estimate does not bound on the event loop, however small the estimate", async () => {
    verifier = new Verifier();
    // A band inside a bulb of the set: every pixel runs to maxIter, tens of ms for an estimate under 1 ms.
    const params = { width: 16, height: 4096, maxIter: 10_000, centerX: -0.1226, centerY: 0.7449, scale: 1e-6 };
    const unit = getKernel("mandelbrot")!.split(mandelbrotParams.parse(params), 51)[0]!;
    expect(unit.work).toBeLessThan(1);
    const answer = await verifier.recompute("mandelbrot", params, unit.input, unit.work);
    expect(answer.output).toEqual((await runTask({ kernel: "mandelbrot", params, input: unit.input })).output);
    expect(verifier.inline).toBe(0);
    expect(verifier.batches).toBe(1);
  });

  it("fails a tiny check that cannot run as the thread would", async () => {
    verifier = new Verifier();
    const bad = { kernel: "pi", params: { samples: 5 }, input: { seed: 2, samples: 5 } };
    const here = await verifier.recompute(bad.kernel, bad.params, bad.input, 0.5).then(() => undefined, (e: Error) => e.message);
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
