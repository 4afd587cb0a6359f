import { afterEach, describe, expect, it } from "vitest";
import { Verifier } from "../../server/coordinator/verifier";
import { runTask } from "../../worker/runtime/runTask";

// The server's spot-checks run on one kernel thread, sent in batches: the first alone, what
// queued meanwhile together. A batch over its time limit is sent again one check at a time.

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

  it("refuses checks once closed, and settles those in flight", async () => {
    verifier = new Verifier();
    const inFlight = verifier.recompute("pi", pi(1, 1e9).params, pi(1, 1e9).input);
    verifier.close();
    await expect(inFlight).rejects.toThrow(/closed|exited/);
    await expect(verifier.recompute("pi", pi(2).params, pi(2).input)).rejects.toThrow(/closed/);
  });
});
