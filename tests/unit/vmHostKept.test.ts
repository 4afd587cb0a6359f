import { describe, expect, it } from "vitest";
import { compileJsProgram } from "../../worker/sandbox/compileJs";
import { createVmJsHost } from "../../worker/sandbox/vmHost";

// A kept context (an iterative job's units share one) runs program code before the host copies
// the next unit's bytes into it. The copy must not go through anything the program could have
// replaced: `target.set(hostBytes)` looked `set` up on the context's prototypes, and a program
// that had replaced it was handed the host's Uint8Array, and through it the host realm.
describe("a kept node:vm context", () => {
  const program = `
export function run(input, ctx) {
  const TypedArray = Object.getPrototypeOf(Uint8Array.prototype);
  if (!globalThis.armed) {
    globalThis.armed = true;
    const set = TypedArray.set;
    Object.defineProperty(TypedArray, "set", { configurable: true, writable: true, value: function (source, offset) {
      globalThis.caught = source;
      return set.call(this, source, offset);
    } });
  }
  const caught = globalThis.caught;
  const sum = input.reduce((s, b) => s + b, 0);
  if (!caught) return { caught: false, sum };
  return { caught: true, hostRealm: caught.constructor.constructor !== Function, sum };
}`;

  it("copies each unit's bytes without calling program code, so no host object reaches the program", async () => {
    const compiled = await compileJsProgram(program, { fileName: "leak.js", owner: "test" });
    const host = createVmJsHost();
    const call = (bytes: number[]) => host.call({
      script: compiled.script, hash: "leak", fn: "run", arg: new Uint8Array(bytes), argKind: "bytes", params: {}, keep: "job-1", memoryLimitBytes: 256 << 20,
    });
    expect(JSON.parse(await call([1, 2, 3]))).toEqual({ caught: false, sum: 6 });
    // The same context (its global kept `armed`), the new unit's own bytes, and no leak.
    expect(JSON.parse(await call([4, 5]))).toEqual({ caught: false, sum: 9 });
  });

  it("copies a kept input (by its content hash) into the same array each time, refilled", async () => {
    const compiled = await compileJsProgram(`
export function run(input) {
  const seen = (globalThis.seen ??= []);
  const same = seen.includes(input);
  seen.push(input);
  const first = input[0];
  input[0] = 99; // refilled before the next unit of the same input
  return { same, first, length: input.length };
}`, { fileName: "keep.js", owner: "test" });
    const host = createVmJsHost();
    const call = (bytes: number[], inputRef?: string) => host.call({
      script: compiled.script, hash: "keep", fn: "run", arg: new Uint8Array(bytes), argKind: "bytes", params: {}, keep: "job-2", inputRef, memoryLimitBytes: 256 << 20,
    }).then((j) => JSON.parse(j));
    expect(await call([1, 2], "a")).toEqual({ same: false, first: 1, length: 2 });
    expect(await call([1, 2], "a")).toEqual({ same: true, first: 1, length: 2 });
    expect(await call([7, 8, 9], "b")).toEqual({ same: false, first: 7, length: 3 });
    expect(await call([1, 2], "a")).toEqual({ same: true, first: 1, length: 2 });
    // An input without a hash gets an array of its own.
    expect(await call([1, 2])).toEqual({ same: false, first: 1, length: 2 });
  });
});
