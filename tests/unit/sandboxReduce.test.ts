import { describe, expect, it } from "vitest";
import { compileJsProgram } from "../../worker/sandbox/compileJs";
import { reduceOutputs } from "../../worker/sandbox/reduceOnServer";
import { b64, fromB64, JS, WAT, wat } from "./sandboxPrograms";

const script = async (src: string) => (await compileJsProgram(src)).script;

describe("reduceOutputs: JS reduce in QuickJS", () => {
  it("merges outputs with the program's reduce, given the job's params", async () => {
    const r = await reduceOutputs({
      kind: "js", code: await script(JS.good), outputs: [{ double: 2 }, { double: 4 }, { double: 10 }], params: { scale: 3 }, timeMs: 5000, memoryMb: 32,
    });
    expect(r.result).toBe(48);
  });

  it("supports an async reduce and returns plain JSON (undefined becomes null)", async () => {
    const code = await script("export const run = (x) => x;\nexport async function reduce(outputs) { await null; return { n: outputs.length, skip: undefined }; }");
    expect((await reduceOutputs({ kind: "js", code, outputs: [1, 2], params: null, timeMs: 5000, memoryMb: 32 })).result).toEqual({ n: 2 });
  });

  it("runs at most two one-shot threads at once; the others wait their turn, their time limit not yet running", async () => {
    // Each reduce spins 300 ms of wall time and says when it ran.
    const code = await script("export const run = (x) => x;\nexport function reduce() { const start = Date.now(); while (Date.now() < start + 300); return { start, end: Date.now() }; }");
    const runs = await Promise.all(Array.from({ length: 4 }, () => reduceOutputs({ kind: "js", code, outputs: [1], params: null, timeMs: 1000, memoryMb: 32 })));
    const spans = runs.map((r) => r.result as { start: number; end: number });
    // At the start of each run, how many runs were going (itself included).
    const overlap = spans.map((a) => spans.filter((b) => b.start <= a.start && a.start < b.end).length);
    expect(Math.max(...overlap), JSON.stringify(spans)).toBeLessThanOrEqual(2);
  });

  it("times out cleanly on an infinite loop", async () => {
    const t0 = Date.now();
    await expect(reduceOutputs({ kind: "js", code: await script(JS.reduceLoops), outputs: [1], params: null, timeMs: 500, memoryMb: 32 })).rejects.toThrow(
      "time limit of 0.5 s exceeded",
    );
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("stops a reduce that exhausts its memory", async () => {
    await expect(reduceOutputs({ kind: "js", code: await script(JS.reduceHog), outputs: [1], params: null, timeMs: 10_000, memoryMb: 16 })).rejects.toThrow(
      "memory limit of 16 MiB exceeded",
    );
  });

  it("says that a null thrown may be memory running out (QuickJS throws null when it cannot allocate its error)", async () => {
    const hog = await script("export const run = (x) => x;\nexport function reduce() { const a = []; for (;;) a.push({ n: a.length, s: 'abc' + a.length }); }");
    const nul = await script("export const run = (x) => x;\nexport function reduce() { throw null; }");
    const why = "null was thrown: by the program, or because it ran out of the 16 MiB of memory it may use";
    const run = (code: string) => reduceOutputs({ kind: "js", code, outputs: [1], params: null, timeMs: 10_000, memoryMb: 16 });
    await expect(run(nul)).rejects.toThrow(why);
    // Which of the two the hog meets depends on what it was allocating when the limit came.
    await expect(run(hog)).rejects.toThrow(/^(memory limit of 16 MiB exceeded|null was thrown: by the program, or because it ran out of the 16 MiB of memory it may use)$/);
  });

  it("reports the program's exception, a missing reduce, and has no host APIs", async () => {
    const throws = await script('export const run = (x) => x;\nexport function reduce() { throw new RangeError("nothing to merge"); }');
    await expect(reduceOutputs({ kind: "js", code: throws, outputs: [], params: null, timeMs: 5000, memoryMb: 32 })).rejects.toThrow("RangeError: nothing to merge");
    const noReduce = await script("export const run = (x) => x;");
    await expect(reduceOutputs({ kind: "js", code: noReduce, outputs: [], params: null, timeMs: 5000, memoryMb: 32 })).rejects.toThrow("the program does not export reduce");
    const probe = await script(
      "export const run = (x) => x;\nexport function reduce() { return [typeof process, typeof globalThis.require, typeof fetch, typeof setTimeout, typeof std, typeof os]; }",
    );
    const r = await reduceOutputs({ kind: "js", code: probe, outputs: [], params: null, timeMs: 5000, memoryMb: 32 });
    expect(r.result).toEqual(["undefined", "undefined", "undefined", "undefined", "undefined", "undefined"]);
  });
});

describe("reduceOutputs: WASM reduce in a worker thread", () => {
  it("frames the outputs as [u32 length][bytes] and returns the result as base64", async () => {
    const code = await wat(WAT.reverse);
    const outputs = ["ab", "", "cde"].map((s) => ({ b64: b64(new TextEncoder().encode(s)) }));
    const r = await reduceOutputs({ kind: "wasm", code, outputs, params: null, timeMs: 5000, memoryMb: 16 });
    expect(new TextDecoder().decode(fromB64((r.result as { b64: string }).b64))).toBe("abcde");
  });

  it("terminates a WASM reduce that never returns", async () => {
    const loops = (await wat(WAT.loops.replace('(func (export "run")', '(func (export "reduce") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0))\n  (func (export "run")'))) as Uint8Array;
    await expect(reduceOutputs({ kind: "wasm", code: loops, outputs: [], params: null, timeMs: 400, memoryMb: 16 })).rejects.toThrow("time limit of 0.4 s exceeded");
  });

  it("refuses an answer over 18 MiB in its thread, before it is copied out", async () => {
    // reduce grows its memory to 20 MiB and answers all of it.
    const big = await wat(`(module
      (memory (export "memory") 1 512)
      (global $len (mut i32) (i32.const 0))
      (func (export "alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "result_len") (result i32) (global.get $len))
      (func (export "run") (param i32 i32) (result i32) (i32.const 0))
      (func (export "reduce") (param i32 i32) (result i32)
        (drop (memory.grow (i32.const 320)))
        (global.set $len (i32.const 20971520))
        (i32.const 0)))`);
    await expect(reduceOutputs({ kind: "wasm", code: big, outputs: [], params: null, timeMs: 5000, memoryMb: 32 })).rejects.toThrow(
      "reduce answered 20.0 MiB, more than the 18 MiB a program may answer",
    );
  });

  it("refuses a module without reduce, or whose memory may outgrow the limit", async () => {
    await expect(reduceOutputs({ kind: "wasm", code: await wat(WAT.traps), outputs: [], params: null, timeMs: 5000, memoryMb: 16 })).rejects.toThrow(
      "the program does not export reduce",
    );
    await expect(reduceOutputs({ kind: "wasm", code: await wat(WAT.reverse), outputs: [], params: null, timeMs: 5000, memoryMb: 0.5 })).rejects.toThrow(
      /maximum of 16 pages \(1 MiB\) is above the limit of 8 pages/,
    );
  });
});
