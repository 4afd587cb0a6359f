import { describe, expect, it } from "vitest";
import { FairSlots } from "../../worker/sandbox/fairSlots";

const deferred = () => {
  let resolve = () => {};
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};
const tick = () => new Promise((r) => setImmediate(r));

describe("FairSlots", () => {
  it("runs one thing per account at a time, and hands a freed slot to the account waiting longest", async () => {
    const slots = new FairSlots(2);
    const started: string[] = [];
    const gates = new Map<string, ReturnType<typeof deferred>>();
    const run = (key: string, name: string) => {
      const gate = deferred();
      gates.set(name, gate);
      return slots.run(key, async () => {
        started.push(name);
        await gate.promise;
        return name;
      });
    };
    // One account queues three slow runs, then two others one each.
    const all = [run("a", "a1"), run("a", "a2"), run("a", "a3"), run("b", "b1"), run("c", "c1")];
    await tick();
    // a1 holds a slot; a2 and a3 wait for it; b1 takes the second slot.
    expect(started).toEqual(["a1", "b1"]);
    expect(slots.size).toBe(5);
    gates.get("b1")!.resolve();
    await tick();
    // c1, not a2: "a" is still running.
    expect(started).toEqual(["a1", "b1", "c1"]);
    gates.get("a1")!.resolve();
    await tick();
    expect(started).toEqual(["a1", "b1", "c1", "a2"]);
    gates.get("c1")!.resolve();
    gates.get("a2")!.resolve();
    await tick();
    expect(started).toEqual(["a1", "b1", "c1", "a2", "a3"]);
    gates.get("a3")!.resolve();
    expect(await Promise.all(all)).toEqual(["a1", "a2", "a3", "b1", "c1"]);
    expect(slots.size).toBe(0);
  });

  it("frees the slot of a run that throws", async () => {
    const slots = new FairSlots(1);
    await expect(slots.run("a", () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    await expect(slots.run("a", async () => 7)).resolves.toBe(7);
  });

  it("drops a run aborted while it waits, and serves the next in line", async () => {
    const slots = new FairSlots(1);
    const gate = deferred();
    const first = slots.run("a", () => gate.promise.then(() => "a1"));
    const stop = new AbortController();
    let ran = false;
    const waiting = slots.run("a", async () => { ran = true; return "a2"; }, stop.signal);
    const other = slots.run("b", async () => "b1");
    await tick();
    expect(slots.size).toBe(3);
    stop.abort(new Error("cancelled"));
    await expect(waiting).rejects.toThrow("cancelled");
    expect(slots.size).toBe(2);
    gate.resolve();
    expect(await Promise.all([first, other])).toEqual(["a1", "b1"]);
    expect(ran).toBe(false);
    expect(slots.size).toBe(0);
    // Already aborted: refused before it queues.
    await expect(slots.run("c", async () => 1, stop.signal)).rejects.toThrow("cancelled");
    expect(slots.size).toBe(0);
  });
});
