import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import wabtInit from "wabt";
import { auditComparator, JS_AUDIT_TOLERANCE, ProgramAudits } from "../../server/coordinator/programAudits";
import { outputsAgree } from "../../server/scheduler/compare";
import { parseCsv, shardRows } from "../../server/services/programs/csvShards";
import { DirectoryBlobStore } from "../../server/store/blobs";
import { compileJsProgram } from "../../worker/sandbox/compileJs";
import { runInQuickJS } from "../../worker/sandbox/quickjs";
import { runProgram } from "../../worker/sandbox/runProgram";
import { closeStepSandbox, runUnitOnServer } from "../../worker/sandbox/stepSandbox";
// @ts-expect-error: a plain ES module of the examples, without types
import { makeClassification } from "../../examples/js/make-classification.mjs";
// @ts-expect-error: a plain ES module of the examples, without types
import * as logreg from "../../examples/js/logreg.js";

// The server's after-the-fact spot-checks of iterative programs' units: a unit recomputed in
// QuickJS (JS) or as WebAssembly (WASM), and compared with what a volunteer sent.

const examples = path.join(import.meta.dirname, "..", "..", "examples");
let dir: string;
let blobs: DirectoryBlobStore;
let script: string;
let shard: Uint8Array;
let columns: string[];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-audits-"));
  blobs = new DirectoryBlobStore(dir);
  script = (await compileJsProgram(fs.readFileSync(path.join(examples, "js", "logreg.js"), "utf8"))).script;
  const table = parseCsv(makeClassification({ rows: 2000, features: 8, seed: 3 }) as string);
  columns = table.columns;
  shard = new Uint8Array(shardRows(table, 1)[0]);
});
afterAll(() => {
  closeStepSandbox();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** V8's answer for a logreg unit, through JSON as a volunteer sends it. */
const v8Unit = (w: number[]) => JSON.parse(JSON.stringify(logreg.run(shard, { params: {}, columns, broadcast: { w }, round: 1, progress() {} }))) as number[];

describe("a JS unit in QuickJS", () => {
  it("gives logreg's gradient within the audit tolerance of V8's, whatever the weights", async () => {
    let w = new Array(columns.length).fill(0);
    for (let round = 1; round <= 6; round++) {
      const v8 = v8Unit(w);
      const q = JSON.parse(await runInQuickJS({
        script, input: shard, inputKind: "bytes", params: {}, context: { columns, round, broadcast: { w } }, timeMs: 30_000, memoryMb: 64,
      })) as number[];
      expect(q).toHaveLength(v8.length);
      expect(outputsAgree(q, v8, { kind: "tolerance", ...JS_AUDIT_TOLERANCE })).toBe(true);
      w = w.map((x, i) => x - 0.5 * v8[i]);
    }
  });

  it("gives run a JSON value, a string or bytes, and ctx with the params and the task's fields", async () => {
    const probe = (await compileJsProgram(`export function run(input, ctx) {
      return { type: input instanceof Uint8Array ? "bytes" : typeof input, size: input.length ?? input.n, params: ctx.params, round: ctx.round, progress: typeof ctx.progress };
    }`)).script;
    const run = async (input: unknown, inputKind: "json" | "text" | "bytes") =>
      JSON.parse(await runInQuickJS({ script: probe, input, inputKind, params: { lr: 2 }, context: { round: 3 }, timeMs: 5000, memoryMb: 32 })) as unknown;
    const ctx = { params: { lr: 2 }, round: 3, progress: "function" };
    expect(await run({ n: 7 }, "json")).toEqual({ type: "object", size: 7, ...ctx });
    expect(await run("abc\n", "text")).toEqual({ type: "string", size: 4, ...ctx });
    expect(await run(new Uint8Array(5), "bytes")).toEqual({ type: "bytes", size: 5, ...ctx });
  });
});

describe("ProgramAudits", () => {
  const jobParams = async (kind: "js" | "wasm", code: string | Uint8Array) => {
    const hash = await blobs.put(code);
    return { program: { hash, kind, script: kind === "js" ? hash : null }, params: {}, limits: { timeMs: 2000, memoryMb: 64 }, context: { columns } };
  };

  it("finds an honest JS gradient right and a poisoned one wrong, by the job's comparator widened for QuickJS", async () => {
    const audits = new ProgramAudits(blobs);
    const params = await jobParams("js", script);
    const unit = { blob: await blobs.put(shard), encoding: "bytes", context: { round: 2, broadcast: { w: new Array(columns.length).fill(0.1) } } };
    const honest = v8Unit(unit.context.broadcast.w);
    expect(await audits.check({ id: "j", owner: "u" }, params, undefined, unit, honest)).toEqual({ agrees: true });
    // Off by a millionth of one component: more than QuickJS and V8 ever differ by.
    const nudged = honest.map((x, i) => (i === 0 ? x * (1 + 1e-6) : x));
    expect(await audits.check({ id: "j", owner: "u" }, params, undefined, unit, nudged)).toEqual({ agrees: false });
    expect(await audits.check({ id: "j", owner: "u" }, params, undefined, unit, honest.slice(1))).toEqual({ agrees: false });
    expect(audits.audits).toBe(3);
  });

  it("lets no job hold more than 4 audits waiting, so a program slow on the server cannot starve the others'", async () => {
    const audits = new ProgramAudits(blobs);
    const slow = await jobParams("js", (await compileJsProgram("export function run() { const t = Date.now(); while (Date.now() - t < 300); return 1; }")).script);
    const unit = { value: 0 };
    const verdicts = Promise.all(Array.from({ length: 5 }, () => audits.check({ id: "slow", owner: "u" }, slow, undefined, unit, 1)));
    const other = await audits.check({ id: "other", owner: "u" }, slow, undefined, unit, 2);
    expect(other).toEqual({ agrees: false });
    expect((await verdicts).map((v) => ("agrees" in v ? v.agrees : v.skipped))).toEqual([true, true, true, true, "4 audits of this job are waiting already"]);
  });

  it("lets no account hold more than 8 audits waiting, however many jobs it runs", async () => {
    const audits = new ProgramAudits(blobs);
    const slow = await jobParams("js", (await compileJsProgram("export function run() { const t = Date.now(); while (Date.now() - t < 100); return 1; }")).script);
    const unit = { value: 0 };
    // Three jobs of one account, four audits each: the ninth and later are skipped.
    const greedy = Promise.all(["a", "b", "c"].flatMap((id) => Array.from({ length: 4 }, () => audits.check({ id, owner: "greedy" }, slow, undefined, unit, 1))));
    const other = await audits.check({ id: "d", owner: "someone else" }, slow, undefined, unit, 1);
    expect(other).toEqual({ agrees: true });
    const verdicts = (await greedy).map((v) => ("agrees" in v ? v.agrees : v.skipped));
    expect(verdicts.filter((v) => v === true)).toHaveLength(8);
    expect(verdicts.filter((v) => v === "8 audits of its owner's jobs are waiting already")).toHaveLength(4);
  });

  it("paces the audit thread to its share of a core: at 0.1, the next audit starts 9 times the last one's time after it ended", async () => {
    // Each audit answers when it started; it runs 200 ms.
    const code = (await compileJsProgram("export function run() { const t = Date.now(); while (Date.now() - t < 200); return t; }")).script;
    const req = { op: "run", kind: "js", hash: "busy", code, input: 0, inputKind: "json", params: {}, timeMs: 10_000, memoryMb: 64 } as const;
    const starts = (share: number) => Promise.all([runUnitOnServer(req, share), runUnitOnServer(req, share)]) as Promise<number[]>;
    const [a, b] = await starts(0.1);
    expect(b - a).toBeGreaterThanOrEqual(2000);
    // Back to back at 1 (after the rest the last paced audit left): without the 1.8 s rest,
    // with room for a loaded machine, where this thread (nice 19) waits long for a core.
    const [c, d] = await starts(1);
    expect(d - c).toBeGreaterThanOrEqual(200);
    expect(d - c).toBeLessThan(1500);
  });

  it("compares a WASM unit exactly, and skips (proves nothing) when the program fails on the server", async () => {
    const wabt = await wabtInit();
    const mod = wabt.parseWat("linreg.wat", fs.readFileSync(path.join(examples, "wasm", "linreg.wat"), "utf8"));
    const wasm = new Uint8Array(mod.toBinary({}).buffer);
    const table = parseCsv("x1,x2,y\n1,2,3\n4,5,6\n-1,0.5,2\n");
    const bytes = new Uint8Array(shardRows(table, 1)[0]);
    const audits = new ProgramAudits(blobs);
    const params = { ...(await jobParams("wasm", wasm)), context: { columns: table.columns } };
    const broadcast = { b64: Buffer.from(new Float64Array([0.5, -1, 0.25]).buffer).toString("base64") };
    const unit = { blob: await blobs.put(bytes), encoding: "bytes", context: { round: 1, broadcast } };
    const { output } = await runProgram({ kind: "wasm", hash: "linreg", code: wasm, input: bytes, inputKind: "bytes", params: {}, context: { ...params.context, ...unit.context }, memoryLimitBytes: 64 << 20 });
    expect(await audits.check({ id: "j", owner: "u" }, params, undefined, unit, output)).toEqual({ agrees: true });
    expect(await audits.check({ id: "j", owner: "u" }, params, undefined, unit, { b64: Buffer.from(new Float64Array([0, 0, 0, 0]).buffer).toString("base64") })).toEqual({ agrees: false });
    // A broadcast the module cannot read traps here: no verdict on the volunteer either way.
    const broken = { ...unit, context: { round: 1, broadcast: "not bytes" } };
    expect(await audits.check({ id: "j", owner: "u" }, params, undefined, broken, output)).toMatchObject({ skipped: expect.any(String) });
    // Nor when its input is gone from the blob store.
    expect(await audits.check({ id: "j", owner: "u" }, params, undefined, { ...unit, blob: "f".repeat(64) }, output)).toMatchObject({ skipped: expect.stringMatching(/could not be read/) });
  });

  it("widens a JS job's comparator to the audit tolerance, and keeps a WASM job's", () => {
    expect(auditComparator("js", undefined)).toEqual({ kind: "tolerance", ...JS_AUDIT_TOLERANCE });
    expect(auditComparator("js", { kind: "tolerance", relative: 1e-3, absolute: 0 })).toEqual({ kind: "tolerance", relative: 1e-3, absolute: JS_AUDIT_TOLERANCE.absolute });
    expect(auditComparator("wasm", undefined)).toEqual({ kind: "exact" });
  });
});
