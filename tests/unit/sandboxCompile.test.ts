import vm from "node:vm";
import { describe, expect, it } from "vitest";
import { compileJsProgram, inspectWasm } from "../../worker/sandbox/compileJs";
import { MiB, PROGRAM_GLOBAL } from "../../worker/sandbox/abi";
import { readWasmInfo } from "../../worker/sandbox/wasmInfo";
import { JS, WAT, wat } from "./sandboxPrograms";

describe("compileJsProgram", () => {
  it("compiles a self-contained module into a script that defines the namespace, with its exports and comparator", async () => {
    const c = await compileJsProgram(JS.good);
    expect(c.exports.sort()).toEqual(["comparator", "reduce", "run"]);
    expect(c.comparator).toEqual({ kind: "tolerance", relative: 1e-9, absolute: 0 });
    // A classic script: evaluating it defines the global namespace with a callable run.
    const ctx = vm.createContext({ TextEncoder, TextDecoder });
    vm.runInContext(c.script, ctx);
    const ns = vm.runInContext(PROGRAM_GLOBAL, ctx) as { run: (i: unknown, c: unknown) => unknown };
    expect(ns.run({ n: 21 }, { params: { scale: 1 }, progress() {} })).toMatchObject({ double: 42, text: "héllo" });
  });

  it("leaves comparator out when the module has none", async () => {
    const c = await compileJsProgram("export const run = (x) => x;");
    expect(c.exports).toEqual(["run"]);
    expect(c.comparator).toBeUndefined();
  });

  it("rejects a syntax error with its line and column", async () => {
    await expect(compileJsProgram("export function run(x) {\n  return x +;\n}")).rejects.toThrow(/^program\.js:2:\d+: Unexpected ";"/);
  });

  it("rejects imports and requires: programs are self-contained", async () => {
    await expect(compileJsProgram('import fs from "node:fs";\nexport function run() { return fs; }')).rejects.toThrow(
      /program\.js:1:16: import of "node:fs" is not allowed: a program must be self-contained/,
    );
    await expect(compileJsProgram('export function run() { return require("child_process"); }')).rejects.toThrow(
      /program\.js:1:\d+: require of "child_process" is not allowed/,
    );
    await expect(compileJsProgram("export function run(x) {\n  return import(x);\n}")).rejects.toThrow(/program\.js:2:10: import\(\) is not allowed/);
    await expect(compileJsProgram("export function run() { return import.meta.url; }")).rejects.toThrow(/import\.meta is not available/);
    await expect(compileJsProgram("const x = await 1;\nexport function run() { return x; }")).rejects.toThrow(/program\.js:1:11: Top-level await/);
  });

  it("rejects a module without a run export, saying what it exports", async () => {
    await expect(compileJsProgram("export function main() {}")).rejects.toThrow(
      /does not export a function named run \(add: export function run\(input, ctx\) \{ … \}\); it exports main/,
    );
    await expect(compileJsProgram("   ")).rejects.toThrow("the program is empty");
  });

  it("rejects a malformed comparator, and one that cannot be computed in the sandbox", async () => {
    await expect(compileJsProgram('export const run = (x) => x; export const comparator = { kind: "fuzzy" };')).rejects.toThrow(/unknown kind "fuzzy"/);
    await expect(compileJsProgram('export const run = (x) => x; export const comparator = { kind: "tolerance", relative: -1 };')).rejects.toThrow(
      /relative = -1, which is not a number ≥ 0/,
    );
    await expect(compileJsProgram("export const run = (x) => x; export const comparator = (() => { for (;;) {} })();", { comparatorTimeMs: 300 })).rejects.toThrow(
      /comparator could not be read .*time limit of 0\.3 s exceeded/,
    );
  });
});

describe("inspectWasm", () => {
  it("reads a good module's exports and its memory's declared maximum", async () => {
    const info = await inspectWasm(await wat(WAT.reverse));
    expect(info).toEqual({ exports: ["memory", "alloc", "result_len", "run", "reduce"], hasReduce: true, maxMemoryBytes: 16 * 65536 });
    const grows = await inspectWasm(await wat(WAT.growsPastMax)); // env.abort is the one import allowed
    expect(grows.hasReduce).toBe(false);
    expect(grows.maxMemoryBytes).toBe(4 * 65536);
  });

  it("rejects what is not WebAssembly, or not valid", async () => {
    await expect(inspectWasm(new TextEncoder().encode("export function run() {}"))).rejects.toThrow(/not a WebAssembly module \(it does not start with \\0asm\)/);
    const truncated = (await wat(WAT.reverse)).slice(0, 40);
    await expect(inspectWasm(truncated)).rejects.toThrow(/not a valid WebAssembly module/);
  });

  it("rejects imports other than env.abort", async () => {
    const bytes = await wat(WAT.importsFetch);
    await expect(inspectWasm(bytes)).rejects.toThrow(
      'the module imports function "env.fetch": programs must be self-contained (the only import allowed is the function env.abort)',
    );
  });

  it("rejects missing exports and wrong signatures", async () => {
    const noResultLen = await wat(WAT.noResultLen);
    const badRun = await wat(WAT.badRunSignature);
    await expect(inspectWasm(noResultLen)).rejects.toThrow("the module does not export result_len (a program exports memory, alloc, run and result_len)");
    await expect(inspectWasm(badRun)).rejects.toThrow('the export "run" must have the signature (i32, i32) -> i32, not (i32) -> i32');
  });

  it("rejects a memory without a maximum, or with one above the limit (in pages and MiB)", async () => {
    const noMax = await wat(WAT.noMax);
    const bigMax = await wat(WAT.bigMax);
    await expect(inspectWasm(noMax, 64 * MiB)).rejects.toThrow(
      'the exported memory declares no maximum: declare one of at most 1024 pages (64 MiB) (e.g. (memory (export "memory") 1 1024))',
    );
    await expect(inspectWasm(bigMax, 256 * MiB)).rejects.toThrow(
      "the exported memory's maximum of 20000 pages (1250 MiB) is above the limit of 4096 pages (256 MiB)",
    );
    expect((await inspectWasm(bigMax, 2000 * MiB)).maxMemoryBytes).toBe(20000 * 65536);
  });

  it("parses LEB128 limits beyond one byte and modules with many sections", async () => {
    const info = readWasmInfo(await wat(`(module (memory (export "m") 300 60000) (func (export "f") (param i64 f64) (result f32) (f32.const 0)))`));
    expect(info.memories).toEqual([{ min: 300, max: 60000, shared: false, is64: false }]);
    expect(info.funcTypes[0]).toEqual({ params: ["i64", "f64"], results: ["f32"] });
  });
});
