import { describe, expect, it } from "vitest";
import { InputCache, InputMirror, MAX_CACHED_INPUT_BYTES } from "../../worker/runtime/inputCache";
import type { TaskRun } from "../../worker/runtime/runTask";

// The inputs a program worker keeps between units, and the sender's mirror of them.

const task = (ref: string | undefined, input: unknown): TaskRun => ({ kernel: "program", params: ref === undefined ? {} : { inputRef: ref }, input });

describe("InputCache", () => {
  it("evicts the least recently used entries past its size, never the one just set", () => {
    const c = new InputCache<string>(10);
    c.set("a", "A", 4);
    c.set("b", "B", 4);
    expect(c.get("a")).toBe("A"); // a is now more recent than b
    c.set("c", "C", 4);
    expect(c.get("b")).toBeUndefined();
    expect([c.get("a"), c.get("c")]).toEqual(["A", "C"]);
    c.set("big", "BIG", 50);
    expect([c.get("a"), c.get("c"), c.get("big")]).toEqual([undefined, undefined, "BIG"]);
  });
});

describe("InputMirror", () => {
  it("sends an input in full once, then only its key, and keys bytes and text apart", () => {
    const m = new InputMirror();
    const bytes = new Uint8Array(100);
    const first = m.request(task("h1", bytes));
    expect([first.key, first.cached]).toEqual(["h1:bytes", false]);
    const second = m.request(task("h1", bytes));
    expect([second.key, second.cached]).toEqual(["h1:bytes", true]);
    expect(m.request(task("h1", "text"))).toMatchObject({ key: "h1:text", cached: false });
  });

  it("keys nothing without a blob reference, nor an input too large or not bytes or text", () => {
    const m = new InputMirror();
    for (const t of [task(undefined, new Uint8Array(4)), task("h", new Uint8Array(MAX_CACHED_INPUT_BYTES + 1)), task("h", { x: 1 })]) {
      expect(m.request(t)).toMatchObject({ key: undefined, cached: false });
      expect(m.request(t).cached).toBe(false);
    }
  });

  it("follows the worker's evictions: past its size the oldest input is sent in full again", () => {
    const m = new InputMirror(250);
    const input = new Uint8Array(100);
    for (const ref of ["a", "b", "c"]) m.request(task(ref, input));
    expect(m.request(task("a", input)).cached).toBe(false);
    expect(m.request(task("c", input)).cached).toBe(true);
  });

  it("resends a cached input once after \"missing\", and refuses a worker that keeps asking", () => {
    const m = new InputMirror();
    const t = task("h", new Uint8Array(10));
    m.request(t);
    const req = m.request(t);
    expect(req.cached).toBe(true);
    expect(req.missed()).toBe(true); // evicted: send it again, in full
    expect(req.missed()).toBe(false); // a second "missing" for the same task: a lying worker
    // The worker was sent the input without a key, so it does not hold it now.
    expect(m.request(t).cached).toBe(false);
  });

  it("refuses \"missing\" for an input that was just sent in full", () => {
    const m = new InputMirror();
    const req = m.request(task("h", "some text"));
    expect(req.cached).toBe(false);
    expect(req.missed()).toBe(false);
  });
});
