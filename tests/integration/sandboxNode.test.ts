// Consumer programs on the headless volunteer's pool: real program processes (worker threads
// where those are not available, and in the fallback's own tests), real node:vm contexts,
// real memory limits. Every failure must stay inside its own task: the pool replaces the
// process and the next task computes.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNodePool, DEFAULT_PROGRAM_MEMORY_MB, programSandbox, startProgramProcessFor } from "../../worker/node/pool";
import { WorkerPool } from "../../worker/runtime/pool";
import type { TaskRun } from "../../worker/runtime/runTask";
import { MiB, type ProgramKind } from "../../worker/sandbox/abi";
import { compileJsProgram } from "../../worker/sandbox/compileJs";
import { fromB64, hostPathsIn, JS, MEMORY_HOGS, UNDER_64_MIB, WAT, wat } from "../unit/sandboxPrograms";

const scripts: Record<string, string> = {};
const wasm: Record<string, Uint8Array> = {};
let pool: WorkerPool;
const linux = process.platform === "linux";
const LIMIT = /^memory limit of 64 MiB exceeded$/;

beforeAll(async () => {
  for (const [name, src] of Object.entries(JS)) scripts[name] = (await compileJsProgram(src)).script;
  for (const [name, src] of Object.entries(MEMORY_HOGS)) scripts[name] = (await compileJsProgram(src)).script;
  scripts.under64 = (await compileJsProgram(UNDER_64_MIB)).script;
  for (const name of ["reverse", "traps", "loops", "growsPastMax", "growsToLimit", "fillsLimit"] as const) wasm[name] = await wat(WAT[name]);
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

const run = (t: TaskRun, timeoutMs = 10_000, on = pool) => on.run(t, "test", { timeoutMs });

/** The failure stays in its task: a good program computes right after, on the same pool. */
async function expectContained(failing: Promise<unknown>, message: string | RegExp, on = pool) {
  await expect(failing).rejects.toThrow(message);
  await expect(run(program("js", "good", { n: 5 }), 10_000, on)).resolves.toMatchObject({ output: { double: 10 } });
}

describe("JS programs in the volunteer's sandbox", () => {
  it.runIf(linux)("runs them in program processes under a kernel memory limit on Linux", () => {
    expect(programSandbox()).toMatchObject({ isolation: "process", limiter: { kind: expect.stringMatching(/^(prlimit|ulimit)$/) } });
  });

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
    await expectContained(run(program("js", "bufferHog", null, { memoryMb: 64 }), 30_000), LIMIT);
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

describe("WASM programs in the volunteer's sandbox", () => {
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

// Issue 11, part 3: the memory limit holds whatever the program allocates with. Each form
// fails with the same message, naming the limit, and the same pool computes the next task.
describe.runIf(linux)("memory limits that hold (program processes)", () => {
  for (const name of Object.keys(MEMORY_HOGS)) {
    it(`fails ${name} at the limit, and the volunteer goes on`, async () => {
      await expectContained(run(program("js", name, null, { memoryMb: 64 }), 60_000), LIMIT);
    });
  }

  it("fails a WASM program whose memory.grow goes past the limit", async () => {
    await expectContained(run(program("wasm", "growsToLimit", "x", { memoryMb: 64 }), 60_000), LIMIT);
  });

  it("lets programs under the limit succeed, again and again in the same process", async () => {
    for (let i = 0; i < 3; i++) {
      const r = await run(program("js", "under64", null, { memoryMb: 64 }), 60_000);
      expect(r.output).toBeGreaterThan(48 * MiB);
    }
    await expect(run(program("wasm", "fillsLimit", "x", { memoryMb: 64 }), 60_000)).resolves.toMatchObject({ output: { b64: "" } });
  });

  it("holds with the shell's ulimit -d where prlimit is missing", async () => {
    const shellPool = new WorkerPool(() => startProgramProcessFor(64 * MiB, { kind: "ulimit", shell: "/bin/sh" }), { threads: 1 });
    try {
      for (const name of ["typedArrayFromTypedArray", "structuredClone", "arrayFrom"]) {
        await expectContained(run(program("js", name, null, { memoryMb: 64 }), 60_000, shellPool), LIMIT, shellPool);
      }
      await expect(run(program("js", "under64", null, { memoryMb: 64 }), 60_000, shellPool)).resolves.toMatchObject({ output: expect.any(Number) });
    } finally {
      shellPool.terminate();
    }
  });
});

/** This process's children whose command line is a program process's (node -e <boot>). */
const programChildren = () => {
  const kids = fs.readdirSync("/proc/self/task").flatMap((t) => {
    try {
      return fs.readFileSync(`/proc/self/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    } catch {
      return []; // a thread that ended meanwhile
    }
  });
  return kids.map(Number).filter((pid) => {
    try {
      return /tabgrid-sandbox\.js/.test(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8"));
    } catch {
      return false; // gone meanwhile
    }
  });
};

describe.runIf(linux)("warm program processes (a dedicated volunteer's)", () => {
  const waitFor = async <T>(probe: () => T | undefined, what: string): Promise<T> => {
    for (let i = 0; i < 200; i++) {
      const v = probe();
      if (v !== undefined) return v;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for ${what}`);
  };

  it("starts each slot's process before any program, runs the first program in it, and replaces one that died idle", async () => {
    const before = new Set(programChildren());
    const warm = createNodePool({ threads: 1, warmPrograms: true });
    try {
      const pid = await waitFor(() => programChildren().find((p) => !before.has(p)), "a warm program process");
      // A task with the default memory limit runs in the process started ahead: no other is started for it.
      expect((await run(program("js", "good", { n: 4 }, { memoryMb: DEFAULT_PROGRAM_MEMORY_MB }), 10_000, warm)).output).toMatchObject({ double: 8 });
      expect(programChildren().filter((p) => !before.has(p))).toEqual([pid]);

      // Killed while idle, the process is not given the next task: a fresh one computes it.
      process.kill(pid, "SIGKILL");
      await waitFor(() => (programChildren().includes(pid) ? undefined : true), "the killed process to go");
      await new Promise((r) => setTimeout(r, 100)); // its "close" event
      expect((await run(program("js", "good", { n: 5 }, { memoryMb: DEFAULT_PROGRAM_MEMORY_MB }), 10_000, warm)).output).toMatchObject({ double: 10 });
      expect(programChildren().filter((p) => !before.has(p))).toHaveLength(1);
    } finally {
      warm.terminate();
    }
  });
});

describe.runIf(linux)("tasks handed ahead to a program process", () => {
  const STAMPS = `export async function run(input) {
  const start = Date.now();
  await new Promise((r) => setTimeout(r, input.ms));
  return { i: input.i, start, end: Date.now() };
}`;
  let one: WorkerPool;
  beforeAll(async () => {
    scripts.stamps = (await compileJsProgram(STAMPS)).script;
    one = createNodePool({ threads: 1 });
  });
  afterAll(() => one?.terminate());

  it("runs them one at a time, in order, in the same process", async () => {
    const before = new Set(programChildren());
    const outs = await Promise.all([0, 1, 2, 3].map((i) => run(program("js", "stamps", { i, ms: 40 }), 10_000, one).then((r) => r.output as { i: number; start: number; end: number })));
    expect(outs.map((o) => o.i)).toEqual([0, 1, 2, 3]);
    for (let k = 1; k < outs.length; k++) expect(outs[k].start).toBeGreaterThanOrEqual(outs[k - 1].end);
    expect(programChildren().filter((p) => !before.has(p))).toHaveLength(1);
  });

  it("computes the task handed ahead of one that times out, on a fresh process", async () => {
    const looping = run(program("js", "loops", null), 1500, one);
    const after = run(program("js", "loops", null), 1500, one);
    const good = run(program("js", "good", { n: 6 }), 10_000, one);
    await expect(looping).rejects.toThrow("time limit of 1.5 s exceeded");
    await expect(after).rejects.toThrow("time limit of 1.5 s exceeded");
    await expect(good).resolves.toMatchObject({ output: { double: 12 } });
  });
});

describe("the worker-thread fallback (no per-process memory limit)", () => {
  let threads: WorkerPool;
  beforeAll(() => {
    threads = createNodePool({ threads: 1, programIsolation: "thread" });
  });
  afterAll(() => threads?.terminate());

  // Only the ArrayBuffer forms: a single huge heap allocation (Array.from({ length: 1e8 }))
  // can end the whole process despite a thread's heap limit, which is why processes are preferred.
  it("counts ArrayBuffer memory by wrapping, with the same message", async () => {
    for (const name of ["typedArrayFromTypedArray", "arrayBuffer", "slice", "structuredClone", "growingBuffers"]) {
      await expectContained(run(program("js", name, null, { memoryMb: 64 }), 60_000, threads), LIMIT, threads);
    }
    await expect(run(program("js", "under64", null, { memoryMb: 64 }), 60_000, threads)).resolves.toMatchObject({ output: expect.any(Number) });
  });
});

// Issue 11, part 4: a program learns no host path, and no failure reported to the server
// carries one.
describe("host paths stay on the host", () => {
  const findings = (output: unknown) => hostPathsIn(JSON.stringify(output));

  it("shows a program nothing of the host in stack traces, call sites, or errors however obtained", async () => {
    const r = await run(program("js", "stackProbe", null), 60_000);
    const seen = r.output as Record<string, unknown>;
    expect(findings(seen)).toEqual([]);
    expect(JSON.stringify(seen)).not.toMatch(/node:|tabgrid-|file:|\.ts\b/);
    // The program's own frames are still there, and a structured-call-site formatter gets a string.
    expect(seen.plain).toMatch(/^Error: plain\n {4}at .*program\.js:\d+:\d+/);
    expect(typeof seen.structured).toBe("string");
    expect(seen.timer).toMatch(/^Error: timer\n {4}at .*program\.js/);
    // Whatever a stack overflow threw at the program belongs to the program's realm.
    if (linux) expect(seen.realmsOfCaughtErrors).toEqual([]);
  });

  it("shows a program nothing of the host in the worker-thread fallback either", async () => {
    const threads = createNodePool({ threads: 1, programIsolation: "thread" });
    try {
      const r = await run(program("js", "stackProbe", null), 60_000, threads);
      expect(findings(r.output)).toEqual([]);
      expect(JSON.stringify(r.output)).not.toMatch(/node:|tabgrid-|file:|\.ts\b/);
    } finally {
      threads.terminate();
    }
  });

  it("ends a program that makes Node's own handlers describe a value of its own, before they hand it the host realm", async () => {
    const threads = createNodePool({ threads: 1, programIsolation: "thread" });
    const file = path.join(os.tmpdir(), `tabgrid-escape-${process.pid}-${Date.now()}`);
    try {
      for (const on of [pool, threads]) {
        await expectContained(run(program("js", "inspectorEscape", null, { params: { file } }), 20_000, on), /exit(ed with)? code 70/, on);
        expect(fs.existsSync(file)).toBe(false);
      }
    } finally {
      threads.terminate();
      fs.rmSync(file, { force: true });
    }
  });

  it("reports a value thrown while loading that throws again when looked at, without running it on the host", async () => {
    await expectContained(run(program("js", "throwsProxyAtLoad", null), 10_000), /^the program failed while loading: a non-Error value was thrown/);
  });

  it("reports failures without host paths", async () => {
    const failure = async (t: Promise<unknown>) => ((await t.then(() => undefined, (e: Error) => e)) as Error).message;
    const stack = await failure(run(program("js", "throwsStack", null)));
    expect(stack).toMatch(/^Error: what I saw: Error: inner\n {4}at .*program\.js.* \(at line \d+, column \d+ of the compiled program\)$/s);
    expect(hostPathsIn(stack)).toEqual([]);
    const paths = await failure(run(program("js", "throwsPath", null)));
    expect(paths).toMatch(/^Error: cannot open <path> or <path> or <path> \(at line \d+, column \d+ of the compiled program\)$/);
    for (const message of [stack, paths, await failure(run(program("js", "throws", null))), await failure(run(program("wasm", "traps", "x")))]) {
      expect(hostPathsIn(message)).toEqual([]);
    }
  });
});
