import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { aggregate, trimCount } from "../../server/services/programs/aggregate";
import { parseCsv, shardRows } from "../../server/services/programs/csvShards";
import { checkStep } from "../../server/services/programs/programStep";
import { compileJsProgram } from "../../worker/sandbox/compileJs";
import { closeStepSandbox, runStep, warmStep } from "../../worker/sandbox/stepSandbox";
import { Scheduler } from "../../server/scheduler";

// The pieces of iterative programs without a server: the numeric merges (robust ones that
// outvote poisoned outputs), CSV shards, what step may return, the step sandbox's limits,
// and the scheduler's cap on one host's share of a round.

describe("numeric merges", () => {
  it("averages, takes medians and trims coordinate-wise", () => {
    const outs = [[1, 10], [2, 20], [3, 30], [1000, -1000]];
    expect(aggregate("mean", outs)).toEqual([251.5, -235]);
    expect(aggregate("median", outs)).toEqual([2.5, 15]);
    // trim 0.25 of 4: one dropped at each end of each coordinate.
    expect(aggregate("trimmed-mean", outs, 0.25)).toEqual([2.5, 15]);
  });

  it("gives the same bits whatever order the outputs arrive in", () => {
    const outs = Array.from({ length: 9 }, (_, i) => [0.1 * (i + 1), 1 / (i + 3)]);
    const reversed = [...outs].reverse();
    expect(aggregate("trimmed-mean", outs)).toEqual(aggregate("trimmed-mean", reversed));
    expect(aggregate("mean", outs)).toEqual(aggregate("mean", reversed));
  });

  it("drops ceil(trim × n) at each end, leaving at least one", () => {
    expect(trimCount(10, 0.1)).toBe(1);
    expect(trimCount(4, 0.1)).toBe(1);
    expect(trimCount(20, 0.1)).toBe(2);
    expect(trimCount(2, 0.4)).toBe(0);
    expect(trimCount(3, 0.49)).toBe(1);
  });

  it("refuses outputs that are not arrays of finite numbers of one length", () => {
    expect(() => aggregate("mean", [[1, 2], [3]])).toThrow(/output 1 has 1 numbers, output 0 has 2/);
    expect(() => aggregate("median", [[1], { a: 1 }])).toThrow(/output 1 is not an array/);
    expect(() => aggregate("mean", [[1], [null]])).toThrow(/not a finite number/);
    expect(() => aggregate("mean", [])).toThrow(/no outputs/);
  });
});

describe("CSV shards", () => {
  it("parses a header and numbers, and cuts rows into contiguous shards of float64 bytes", () => {
    const t = parseCsv("x,y,label\n1,2,0\n3,4.5,1\n\n5,6,1\n");
    expect(t.columns).toEqual(["x", "y", "label"]);
    expect(t.rows).toBe(3);
    const shards = shardRows(t, 2).map((b) => Array.from(new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))));
    expect(shards).toEqual([[1, 2, 0], [3, 4.5, 1, 5, 6, 1]]);
    expect(parseCsv("1,2\n3,4").columns).toEqual(["c0", "c1"]);
  });

  it("names the line and column of what is not a number", () => {
    expect(() => parseCsv("a,b\n1,2\n3,x\n")).toThrow(/line 3, column 2 \(b\): "x" is not a number/);
    expect(() => parseCsv("a,b\n1,2,3\n")).toThrow(/line 2 has 3 fields, the header 2/);
    expect(() => parseCsv("a,b\n")).toThrow(/no rows/);
    expect(() => parseCsv("\n\n")).toThrow(/empty/);
  });
});

describe("what a step may return", () => {
  it("takes { next, state, metrics } and { done, result }", () => {
    expect(checkStep({ next: { w: [1] }, state: 2, metrics: { loss: 0.5 } }, 1)).toEqual({ done: false, next: { w: [1] }, state: 2, metrics: { loss: 0.5 } });
    expect(checkStep({ done: true, result: "r" }, 3)).toMatchObject({ done: true, result: "r", metrics: {} });
    // Done without a result: the state is the result.
    expect(checkStep({ done: true, state: { w: [2] } }, 3)).toMatchObject({ result: { w: [2] } });
  });

  it("bounds the broadcast by what the round stores: its size times the round's units", () => {
    const next = "x".repeat(200_000);
    expect(checkStep({ next }, 1, 80)).toMatchObject({ done: false });
    expect(() => checkStep({ next }, 1, 100)).toThrow(/^step's next is 196 KiB and goes with each of the round's 100 units: at most 16 MiB a round in all/);
  });

  it("refuses anything else with a reason", () => {
    expect(() => checkStep(null, 2)).toThrow(/step must return \{ next, state, metrics\? \}.*after round 2/);
    expect(() => checkStep({ state: 1 }, 1)).toThrow(/neither next nor done/);
    expect(() => checkStep({ next: 1, metrics: { loss: "low" } }, 1)).toThrow(/the metric loss is "low", not a finite number/);
    expect(() => checkStep({ next: 1, metrics: [1] }, 1)).toThrow(/metrics must be an object/);
    expect(() => checkStep({ next: "x".repeat(1024 * 1024 + 1) }, 1)).toThrow(/next \(sent to every unit\) is larger than 1024 KiB/);
  });
});

describe("the step sandbox", () => {
  afterAll(() => closeStepSandbox());
  const script = (source: string) => compileJsProgram(source, { fileName: "p.js" }).then((c) => c.script);
  const base = { merged: [1, 2], state: { n: 1 }, ctx: { round: 1, params: { k: 3 } }, timeMs: 2000, memoryMb: 64 };

  it("runs step with the merged output, the state and ctx, and keeps nothing between calls", async () => {
    const s = await script("let calls = 0; export function run() {} export function step(m, st, ctx) { calls++; return { next: m[0] + m[1] + ctx.params.k, state: { n: st.n + 1, calls } }; }");
    expect(await runStep({ script: s, ...base })).toEqual({ next: 6, state: { n: 2, calls: 1 } });
    expect(await runStep({ script: s, ...base })).toEqual({ next: 6, state: { n: 2, calls: 1 } });
  });

  it("runs the program's reduce first when asked, and reports the program's own error", async () => {
    const s = await script("export function run() {} export function reduce(o) { return o.length; } export function step(m) { if (m > 2) throw new RangeError('too many'); return { next: m }; }");
    expect(await runStep({ script: s, ...base, merged: null, reduce: [1, 2] })).toEqual({ next: 2 });
    await expect(runStep({ script: s, ...base, merged: null, reduce: [1, 2, 3] })).rejects.toThrow(/RangeError: too many/);
  });

  it("refuses in its thread an answer too large or too deep, and cuts a huge error message", async () => {
    // Replacing its own JSON.stringify, a step answered any text it liked: 60 MB of it took the
    // server to 1.5 GB and held its event loop for seconds.
    const big = await script(`export function run() {} export function step() { const t = '{"next":[' + "1,".repeat(13e6) + '1]}'; JSON.stringify = () => t; return {}; }`);
    await expect(runStep({ script: big, ...base, memoryMb: 256 })).rejects.toThrow(/^step answered 24\.8 MiB of JSON, more than the 24 MiB the server takes$/);
    const deep = await script(`export function run() {} export function step() { let v = 1; for (let i = 0; i < 5000; i++) v = [v]; return { next: v }; }`);
    await expect(runStep({ script: deep, ...base })).rejects.toThrow(/^step answered JSON nested deeper than 64 levels$/);
    const loud = await script(`export function run() {} export function step() { throw new Error("x".repeat(6e6)); }`);
    const message = await runStep({ script: loud, ...base }).then(() => "", (e: Error) => e.message);
    expect(message.length).toBeLessThan(2100);
    expect(message).toMatch(/^Error: x+… \(6000007 characters\)$/);
    // The thread goes on.
    const ok = await script("export function run() {} export function step(m) { return { next: m }; }");
    expect(await runStep({ script: ok, ...base })).toEqual({ next: [1, 2] });
  });

  it("ends a step past its time limit and then still runs the next", async () => {
    const loop = await script("export function run() {} export function step() { for (;;) {} }");
    await expect(runStep({ script: loop, ...base, timeMs: 200 })).rejects.toThrow(/time limit of 0.2 s exceeded/);
    const ok = await script("export function run() {} export function step(m) { return { next: m }; }");
    expect(await runStep({ script: ok, ...base })).toEqual({ next: [1, 2] });
  });

  it("ends a step past its memory limit", async () => {
    const hog = await script("export function run() {} export function step() { const a = []; for (;;) a.push(new Array(1e5).fill(1)); }");
    await expect(runStep({ script: hog, ...base, memoryMb: 16 })).rejects.toThrow(/memory limit of 16 MiB exceeded/);
  });

  it("a thread started ahead (warmStep) takes the next step; one started under another memory limit never lends it", async () => {
    closeStepSandbox();
    warmStep(base.memoryMb);
    warmStep(base.memoryMb); // already running: nothing more
    const ok = await script("export function run() {} export function step(m) { return { next: m }; }");
    expect(await runStep({ script: ok, ...base })).toEqual({ next: [1, 2] });
    closeStepSandbox();
    warmStep(512);
    const hog = await script("export function run() {} export function step() { const a = []; for (;;) a.push(new Array(1e5).fill(1)); }");
    await expect(runStep({ script: hog, ...base, memoryMb: 16 })).rejects.toThrow(/memory limit of 16 MiB exceeded/);
  });

  it("keeps one evaluation for a job's steps (keep), and starts afresh for another job or after a failure", async () => {
    closeStepSandbox(); // the kept thread of the test before has another memory limit: steps would go to one-shot threads
    const s = await script("let calls = 0; export function run() {} export function step(m, st) { calls++; if (st.fail === calls) throw new Error('failed at ' + calls); return { next: calls }; }");
    const step = (keep: string, state: object = { n: 1 }) => runStep({ script: s, ...base, state, keep });
    expect(await step("job-a")).toEqual({ next: 1 });
    expect(await step("job-a")).toEqual({ next: 2 });
    expect(await step("job-a")).toEqual({ next: 3 });
    // Another job sees nothing of job-a's evaluation, and ends it.
    expect(await step("job-b")).toEqual({ next: 1 });
    expect(await step("job-a")).toEqual({ next: 1 });
    expect(await step("job-a")).toEqual({ next: 2 });
    // A step that failed leaves nothing behind for the next.
    await expect(step("job-a", { fail: 3 })).rejects.toThrow("Error: failed at 3");
    expect(await step("job-a")).toEqual({ next: 1 });
  });

  it("gives each step of a kept evaluation its own time limit", async () => {
    const s = await script("let calls = 0; export function run() {} export function step() { calls++; if (calls === 3) for (;;) {} return { next: calls }; }");
    const step = () => runStep({ script: s, ...base, timeMs: 300, keep: "job-slow" });
    expect(await step()).toEqual({ next: 1 });
    await new Promise((r) => setTimeout(r, 400)); // longer than one step's limit, between steps
    expect(await step()).toEqual({ next: 2 });
    await expect(step()).rejects.toThrow(/time limit of 0.3 s exceeded/);
    expect(await step()).toEqual({ next: 1 });
  });

  it("has no host objects to reach", async () => {
    const s = await script("export function run() {} export function step() { return { next: [typeof process, typeof fetch, typeof XMLHttpRequest] }; }");
    expect(await runStep({ script: s, ...base })).toEqual({ next: ["undefined", "undefined", "undefined"] });
  });
});

describe("one host's share of a round (maxUnitsPerHost)", () => {
  const spec = (n: number, cap?: number) => ({
    id: "r", kernel: "program", params: {}, leaseMs: 60_000, maxErrors: 3, replication: { target: 1, quorum: 1, maxInstances: 3 },
    units: Array.from({ length: n }, (_, i) => ({ id: `u${i}`, index: i, input: i, work: 1 })), ...(cap ? { maxUnitsPerHost: cap } : {}),
  });
  const connect = (s: Scheduler, id: string) => s.addVolunteer(id, { window: 8, host: `h-${id}`, account: `a-${id}` });

  it("gives a fast host no more than its share while others can take units", () => {
    const s = new Scheduler();
    for (const v of ["fast", "b", "c", "d"]) connect(s, v);
    s.addJob(spec(8, 2), 0);
    expect(s.leaseTasks("fast", 0)).toHaveLength(2);
    for (const v of ["b", "c", "d"]) expect(s.leaseTasks(v, 0)).toHaveLength(2);
  });

  it("completes a round at completeAt validated units and revokes the copies still running", () => {
    const s = new Scheduler();
    for (const v of ["a", "b"]) connect(s, v);
    s.addJob({ ...spec(4), completeAt: 3 }, 0);
    const tasks = [...s.leaseTasks("a", 0, 2), ...s.leaseTasks("b", 0, 2)];
    expect(tasks).toHaveLength(4);
    const outcomes = tasks.slice(0, 3).map((t, i) => s.completeTask(i < 2 ? "a" : "b", t.taskId, [1], `d${t.unitId}`, 1));
    expect(outcomes.map((o) => (o as { jobDone?: boolean }).jobDone)).toEqual([false, false, true]);
    expect((outcomes[2] as { revoked: Array<{ taskId: string }> }).revoked.map((r) => r.taskId)).toEqual([tasks[3].taskId]);
    expect(s.jobState("r")).toBe("completed");
  });

  it("gives an idle volunteer a copy of the longest running unit once nothing is queued, and the first result decides it", () => {
    const s = new Scheduler();
    for (const v of ["slow", "fast"]) connect(s, v);
    s.addJob({ ...spec(3), speculate: true }, 0);
    const slow = s.leaseTasks("slow", 0, 1);
    const fast = s.leaseTasks("fast", 5, 2);
    expect([...slow, ...fast].map((t) => t.unitId).sort()).toEqual(["u0", "u1", "u2"]);
    for (const t of fast) s.completeTask("fast", t.taskId, [1], "d", 10);
    // Nothing queued: the idle fast volunteer takes a copy of the slow one's unit.
    const copy = s.leaseTasks("fast", 20);
    expect(copy.map((t) => t.unitId)).toEqual([slow[0].unitId]);
    s.audit();
    // One copy a unit: nothing more for it.
    expect(s.leaseTasks("fast", 21)).toEqual([]);
    const won = s.completeTask("fast", copy[0].taskId, [1], "d", 30) as { jobDone: boolean; revoked: Array<{ taskId: string }> };
    expect(won.jobDone).toBe(true);
    expect(won.revoked.map((r) => r.taskId)).toEqual([slow[0].taskId]);
    s.audit();
  });

  it("gives no copies for a job without speculate, or to a host at its share", () => {
    const plain = new Scheduler();
    for (const v of ["slow", "fast"]) connect(plain, v);
    plain.addJob(spec(2), 0);
    plain.leaseTasks("slow", 0, 1);
    for (const t of plain.leaseTasks("fast", 0, 1)) plain.completeTask("fast", t.taskId, [1], "d", 1);
    expect(plain.leaseTasks("fast", 2)).toEqual([]);
    const capped = new Scheduler();
    for (const v of ["slow", "fast"]) connect(capped, v);
    capped.addJob({ ...spec(2, 1), speculate: true }, 0);
    capped.leaseTasks("slow", 0, 1);
    for (const t of capped.leaseTasks("fast", 0, 1)) capped.completeTask("fast", t.taskId, [1], "d", 1);
    expect(capped.leaseTasks("fast", 2)).toEqual([]);
  });

  it("lifts the cap when no other host is there to take the units", () => {
    const s = new Scheduler();
    connect(s, "alone");
    s.addJob(spec(8, 2), 0);
    expect(s.leaseTasks("alone", 0)).toHaveLength(8);
  });
});

it("ships the logistic regression example with run and step", async () => {
  const c = await compileJsProgram(fs.readFileSync(path.join(import.meta.dirname, "../../examples/js/logreg.js"), "utf8"), { fileName: "logreg.js" });
  expect(c.exports).toEqual(expect.arrayContaining(["run", "step"]));
});
