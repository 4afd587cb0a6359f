import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import wabtInit from "wabt";
import { runProgramStep } from "../../server/services/programs/programStep";
import type { BlobStore } from "../../server/store/blobs";
import { closeStepSandbox } from "../../worker/sandbox/stepSandbox";
import { runProgram, stepWasm } from "../../worker/sandbox/runProgram";
import { MiB } from "../../worker/sandbox/abi";
import { f64Bytes, frameRoundInput, frameStepInput, outputNumbers, readStepOutput } from "../../worker/sandbox/wasmRounds";

// The WASM form of an iterative program: its frames, and the linreg example's run and step.
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
const u32s = (...xs: number[]) => new Uint8Array(new Uint32Array(xs).buffer);
const cat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
const utf8 = (s: string) => new TextEncoder().encode(s);

let linreg: Uint8Array;
afterAll(() => closeStepSandbox());
beforeAll(async () => {
  const wabt = await wabtInit();
  const src = path.join(import.meta.dirname, "..", "..", "examples", "wasm", "linreg.wat");
  const mod = wabt.parseWat("linreg.wat", fs.readFileSync(src, "utf8"));
  mod.validate();
  linreg = new Uint8Array(mod.toBinary({}).buffer);
});

describe("the frames of an iterative WASM program", () => {
  it("reads another round's next, state and metrics, and a done step's result", () => {
    const next = new Uint8Array([1, 2, 3]);
    const state = new Uint8Array([9]);
    const metric = cat(u32s(4), utf8("loss"), f64Bytes([0.25]));
    expect(readStepOutput(cat(u32s(0, 3), next, u32s(1), state, u32s(1), metric))).toEqual({
      next: { b64: b64(next) }, state: { b64: b64(state) }, metrics: { loss: 0.25 },
    });
    expect(readStepOutput(cat(u32s(1, 1), state, u32s(0)))).toEqual({ done: true, result: { b64: b64(state) }, metrics: {} });
  });

  it("refuses a malformed answer with where it went wrong", () => {
    expect(() => readStepOutput(u32s(2))).toThrow(/starts with 2: 0 \(another round\) or 1 \(done\)/);
    expect(() => readStepOutput(cat(u32s(0, 10), new Uint8Array(3)))).toThrow(/ends inside next/);
    expect(() => readStepOutput(cat(u32s(1, 0, 0), new Uint8Array(2)))).toThrow(/2 bytes after its metrics/);
    expect(() => readStepOutput(cat(u32s(1, 0, 17)))).toThrow(/17 metrics; at most 16/);
    expect(() => readStepOutput(cat(u32s(1, 0, 1, 1), new Uint8Array([0xff]), f64Bytes([1])))).toThrow(/not UTF-8/);
  });

  it("frames a round's input and a step's input, and reads outputs as f64s", () => {
    const framed = frameRoundInput(3, 21, new Uint8Array([7, 7]), new Uint8Array([5]));
    expect([...framed]).toEqual([...u32s(3, 21, 2), 7, 7, 5]);
    expect([...frameStepInput({ round: 2, shards: 10, columns: 3, arrived: 9 }, new Uint8Array([1]), new Uint8Array([2, 2]))])
      .toEqual([...u32s(2, 10, 3, 9, 1), 1, 2, 2]);
    expect(outputNumbers({ b64: b64(f64Bytes([1.5, -2])) }, 0)).toEqual([1.5, -2]);
    expect(() => outputNumbers({ b64: b64(new Uint8Array(12)) }, 4)).toThrow(/output 4 is 12 bytes, not a whole number of f64s/);
    expect(() => outputNumbers({ b64: b64(f64Bytes([NaN])) }, 1)).toThrow(/output 1 holds NaN/);
    expect(() => outputNumbers({ value: 1 }, 2)).toThrow(/output 2 is not a WASM program's bytes/);
  });
});

describe("examples/wasm/linreg", () => {
  // Two rows of y = 1 + 2 x: x, y.
  const shard = f64Bytes([1, 3, 2, 5]);

  it("computes its shard's mean gradient and squared error from the round's weights", async () => {
    const w = f64Bytes([0.5, 0.25]); // weight, bias
    const r = await runProgram({
      kind: "wasm", hash: "linreg-run", code: linreg, params: null, memoryLimitBytes: 64 * MiB, inputKind: "bytes",
      input: shard, context: { round: 1, columns: ["x", "y"], broadcast: { b64: b64(w) } },
    });
    // err = 0.25 + 0.5 x - y: -2.25 and -3.75.
    const g = outputNumbers(r.output, 0);
    expect(g).toEqual([(-2.25 * 1 + -3.75 * 2) / 2, (-2.25 + -3.75) / 2, (2.25 ** 2 + 3.75 ** 2) / 2]);
  });

  it("starts from zero weights and steps down the merged gradient", async () => {
    const first = readStepOutput(await stepWasm({ hash: "linreg-step", code: linreg, memoryLimitBytes: 64 * MiB,
      input: frameStepInput({ round: 0, shards: 4, columns: 2, arrived: 0 }, new Uint8Array(0), new Uint8Array(0)) }));
    expect(first).toEqual({ next: { b64: b64(f64Bytes([0, 0])) }, state: { b64: b64(f64Bytes([0, 0])) }, metrics: {} });
    const after = readStepOutput(await stepWasm({ hash: "linreg-step", code: linreg, memoryLimitBytes: 64 * MiB,
      input: frameStepInput({ round: 1, shards: 4, columns: 2, arrived: 4 }, f64Bytes([1, 1]), f64Bytes([0.5, -1, 3])) }));
    expect(after).toEqual({ next: { b64: b64(f64Bytes([0.75, 1.5])) }, state: { b64: b64(f64Bytes([0.75, 1.5])) }, metrics: { mse: 3 } });
  });

  it("runs its step in the server's step sandbox, and a module without step is told so", async () => {
    const blobs = { get: async () => Buffer.from(linreg) } as unknown as BlobStore;
    const job = { kind: "wasm" as const, codeHash: "linreg", merge: "mean", params: null, context: { columns: ["x", "y"] }, timeMs: 5000, memoryMb: 64 };
    const first = await runProgramStep({ blobs }, job, 0, null, null, 2);
    expect(first).toMatchObject({ done: false, next: { b64: b64(f64Bytes([0, 0])) } });
    // Two outputs merged by their mean, then one step.
    const outputs = [{ b64: b64(f64Bytes([1, 2, 4])) }, { b64: b64(f64Bytes([3, 4, 6])) }];
    const second = await runProgramStep({ blobs }, job, 1, outputs, first.state, 2);
    expect(second).toEqual({ done: false, next: { b64: b64(f64Bytes([-1, -1.5])) }, state: { b64: b64(f64Bytes([-1, -1.5])) }, metrics: { mse: 5 } });
    await expect(stepWasm({ hash: "no-step", code: await noStep(), memoryLimitBytes: 64 * MiB, input: new Uint8Array(20) })).rejects.toThrow(/does not export step/);
  });
});

async function noStep(): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const mod = wabt.parseWat("nostep.wat", `(module (memory (export "memory") 1 1)
    (func (export "alloc") (param i32) (result i32) (i32.const 0))
    (func (export "run") (param i32 i32) (result i32) (i32.const 0))
    (func (export "result_len") (result i32) (i32.const 0)))`);
  return new Uint8Array(mod.toBinary({}).buffer);
}
