// Consumer programs on the headless volunteer's pool: real worker threads, real node:vm
// contexts, real heap limits. Every failure must stay inside its own task: the pool replaces
// the thread and the next task computes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNodePool } from "../../worker/node/pool";
import type { WorkerPool } from "../../worker/runtime/pool";
import type { TaskRun } from "../../worker/runtime/runTask";
import { MiB, type ProgramKind } from "../../worker/sandbox/abi";
import { compileJsProgram } from "../../worker/sandbox/compileJs";
import { fromB64, JS, WAT, wat } from "../unit/sandboxPrograms";

const scripts: Record<string, string> = {};
const wasm: Record<string, Uint8Array> = {};
let pool: WorkerPool;

beforeAll(async () => {
  for (const [name, src] of Object.entries(JS)) scripts[name] = (await compileJsProgram(src)).script;
  for (const name of ["reverse", "traps", "loops", "growsPastMax"] as const) wasm[name] = await wat(WAT[name]);
  pool = createNodePool({ threads: 2 });
});
afterAll(() => pool?.terminate());

function program(kind: ProgramKind, name: string, input: unknown, opts: { memoryMb?: number; params?: unknown } = {}): TaskRun {
  return {
    kernel: "program",
    params: {
      kind, hash: `${kind}-${name}`, code: kind === "js" ? scripts[name] : wasm[name],
      params: opts.params ?? { scale: 2 }, memoryLimitBytes: (opts.memoryMb ?? 64) * MiB,
    },
    input,
  };
}

const run = (t: TaskRun, timeoutMs = 10_000) => pool.run(t, "test", { timeoutMs });

/** The failure stays in its task: a good program computes right after, on the same pool. */
async function expectContained(failing: Promise<unknown>, message: string | RegExp) {
  await expect(failing).rejects.toThrow(message);
  await expect(run(program("js", "good", { n: 5 }))).resolves.toMatchObject({ output: { double: 10 } });
}

describe("JS programs in worker threads", () => {
  it("computes run(input, ctx) with the job's params, and async programs with timers", async () => {
    const r = await run(program("js", "good", { n: 21 }, { params: { scale: 3 } }));
    expect(r.output).toEqual({ double: 42, scale: 3, text: "héllo" });
    expect(r.ms).toBeGreaterThanOrEqual(0);
    expect((await run(program("js", "asyncGood", "four"))).output).toBe(4);
  });

  it("passes line chunks as strings and byte blocks as a Uint8Array", async () => {
    expect((await run(program("js", "bytes", new Uint8Array([1, 2, 3, 250])))).output).toEqual({ sum: 256, len: 4, isBytes: true });
  });

  it("isolates a program that throws", async () => {
    await expectContained(run(program("js", "throws", null)), /^TypeError: boom: the input was bad \(at line \d+, column \d+ of the compiled program\)$/);
  });

  it("stops an infinite loop at the time limit, while another task finishes", async () => {
    const t0 = Date.now();
    const other = run(program("js", "asyncGood", "abc"));
    await expectContained(run(program("js", "loops", null), 1500), "time limit of 1.5 s exceeded");
    expect(Date.now() - t0).toBeLessThan(8000);
    await expect(other).resolves.toMatchObject({ output: 3 });
  });

  it("stops a program that exhausts its heap, without harming the volunteer", async () => {
    await expectContained(run(program("js", "heapHog", null, { memoryMb: 64 }), 30_000), /^memory limit of 64 MiB exceeded/);
  });

  it("stops a program that hoards array buffers (outside the V8 heap)", async () => {
    const before = process.memoryUsage.rss();
    await expectContained(run(program("js", "bufferHog", null, { memoryMb: 64 }), 30_000), "RangeError: memory limit of 64 MiB exceeded (array buffers)");
    expect(process.memoryUsage.rss() - before).toBeLessThan(1024 * MiB);
  });

  it("gives a program no network, no require, no process, and no way to the host's Function", async () => {
    await expectContained(run(program("js", "fetches", null)), /ReferenceError: fetch is not defined/);
    await expectContained(run(program("js", "requires", null)), /TypeError: r is not a function/);
    await expectContained(run(program("js", "process", null)), /ReferenceError: process is not defined/);
    await expectContained(run(program("js", "escapes", null)), /EvalError: Code generation from strings disallowed for this context/);
  });

  it("hands the program only objects of its own realm: no host Function behind ctx, input or timers", async () => {
    const raw = (name: string, script: string, input: unknown = { a: 1 }) => {
      scripts[name] = script;
      return run(program("js", name, input));
    };
    const reachHost = (expr: string) => `var __tabgridProgram = { run: (input, ctx) => { try { return typeof (${expr}); } catch (e) { return e.name; } } };`;
    await expect(raw("viaProgress", reachHost('ctx.progress.constructor("return process")()'))).resolves.toMatchObject({ output: "EvalError" });
    await expect(raw("viaParams", reachHost('ctx.params.constructor.constructor("return process")()'))).resolves.toMatchObject({ output: "EvalError" });
    await expect(raw("viaInput", reachHost('input.constructor.constructor("return process")()'))).resolves.toMatchObject({ output: "EvalError" });
    await expect(raw("viaBytes", reachHost('input.constructor.constructor("return process")()'), new Uint8Array(2))).resolves.toMatchObject({ output: "EvalError" });
    await expect(raw("viaTimer", reachHost('setTimeout.constructor("return process")()'))).resolves.toMatchObject({ output: "EvalError" });
    // import() would reach Node's loader, whose errors belong to the host: such scripts are refused outright.
    await expectContained(
      raw("viaImport", 'var __tabgridProgram = { run: () => import("node:fs").catch((e) => e.constructor.constructor("return process")().pid) };'),
      "the program uses import(), which is not available to programs",
    );
  });
});

describe("WASM programs in worker threads", () => {
  it("copies the input in, runs, and returns the output bytes as base64", async () => {
    const r = await run(program("wasm", "reverse", "hello"));
    expect(new TextDecoder().decode(fromB64((r.output as { b64: string }).b64))).toBe("olleh");
    const json = await run({ ...program("wasm", "reverse", { a: 1 }), params: { ...program("wasm", "reverse", null).params as object, inputKind: "json" } });
    expect(new TextDecoder().decode(fromB64((json.output as { b64: string }).b64))).toBe('}1:"a"{');
  });

  it("isolates a trap", async () => {
    await expectContained(run(program("wasm", "traps", "x")), "WebAssembly trap: unreachable");
  });

  it("stops a WASM infinite loop at the time limit", async () => {
    await expectContained(run(program("wasm", "loops", "x"), 1000), "time limit of 1 s exceeded");
  });

  it("fails a program that tries to grow its memory past the declared maximum", async () => {
    await expectContained(run(program("wasm", "growsPastMax", "x")), "the program called abort (line 7, column 3)");
  });

  it("refuses a module whose declared maximum is above the task's memory limit", async () => {
    await expectContained(run(program("wasm", "reverse", "x", { memoryMb: 0.5 })), /maximum of 16 pages \(1 MiB\) is above the limit of 8 pages/);
  });
});

describe("kernels and programs share the pool", () => {
  it("runs built-in kernels beside programs, within the thread count", async () => {
    const pi = { kernel: "pi", params: { samples: 1000 }, input: { seed: 7, samples: 1000 } };
    const [k, p] = await Promise.all([pool.run(pi, "pi"), run(program("js", "good", { n: 1 }))]);
    expect(k.output).toMatchObject({ inside: expect.any(Number) });
    expect(p.output).toMatchObject({ double: 2 });
    expect(pool.states().length).toBe(2);
  });
});
