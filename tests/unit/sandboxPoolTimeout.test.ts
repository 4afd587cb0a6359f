import { describe, expect, it } from "vitest";
import { WorkerPool, type PoolWorker } from "../../worker/runtime/pool";
import type { TaskResult, TaskRun } from "../../worker/runtime/runTask";
import { dedicatedProgramWorker, routingWorker } from "../../worker/sandbox/routingPool";

/** A worker whose tasks take `input.ms` (Infinity: never end), reporting progress halfway. */
class SlowWorker implements PoolWorker {
  static made: SlowWorker[] = [];
  terminated = false;
  constructor() {
    SlowWorker.made.push(this);
  }
  api = {
    run: (t: TaskRun, onProgress?: (f: number) => void) =>
      new Promise<TaskResult>((resolve) => {
        const ms = (t.input as { ms: number }).ms;
        if (!Number.isFinite(ms)) return; // an infinite loop: only terminate() stops it
        setTimeout(() => onProgress?.(0.5), ms / 2);
        setTimeout(() => !this.terminated && resolve({ output: ms, ms }), ms);
      }),
  };
  terminate() {
    this.terminated = true;
  }
}

const task = (ms: number, kernel = "fake"): TaskRun => ({ kernel, params: {}, input: { ms } });

describe("WorkerPool per-task time limit", () => {
  it("terminates and replaces the worker of a task past its limit, rejects it, and goes on serving", async () => {
    SlowWorker.made = [];
    const pool = new WorkerPool(() => new SlowWorker(), { threads: 2 });
    const stuck = pool.run(task(Infinity), "stuck", { timeoutMs: 150 });
    const fine = pool.run(task(50), "fine", { timeoutMs: 1000 });
    await expect(stuck).rejects.toThrow("time limit of 0.15 s exceeded");
    await expect(fine).resolves.toMatchObject({ output: 50 });
    expect(SlowWorker.made.filter((w) => w.terminated)).toHaveLength(1);
    expect(pool.states()).toHaveLength(2);
    // The replacement computes the next task.
    await expect(pool.run(task(20), "next", { timeoutMs: 1000 })).resolves.toMatchObject({ output: 20 });
    pool.terminate();
  });

  it("counts the limit from when a worker starts the task, not while it queues", async () => {
    const pool = new WorkerPool(() => new SlowWorker(), { threads: 1 });
    const first = pool.run(task(200));
    const queued = pool.run(task(100), "queued", { timeoutMs: 150 }); // waits ~200 ms, then needs 100
    await expect(first).resolves.toBeTruthy();
    await expect(queued).resolves.toMatchObject({ output: 100 });
    pool.terminate();
  });

  it("shows a running task's progress in states()", async () => {
    const pool = new WorkerPool(() => new SlowWorker(), { threads: 1 });
    const p = pool.run(task(200), "progressing");
    await new Promise((r) => setTimeout(r, 150));
    expect(pool.states()[0]).toMatchObject({ state: "busy", task: "progressing", progress: 0.5 });
    await p;
    expect(pool.states()[0].progress).toBeUndefined();
    pool.terminate();
  });

  it("rejects a nonsensical limit", async () => {
    const pool = new WorkerPool(() => new SlowWorker(), { threads: 1 });
    await expect(pool.run(task(1), "x", { timeoutMs: 0 })).rejects.toThrow(RangeError);
    pool.terminate();
  });
});

describe("routing and dedicated program workers", () => {
  it("sends programs to the program worker and kernels to the kernel worker of the same slot", async () => {
    const seen: string[] = [];
    const fake = (name: string): PoolWorker => ({
      api: { run: async (t) => (seen.push(`${name}:${t.kernel}`), { output: name, ms: 1 }) },
      terminate() {},
    });
    const w = routingWorker(() => fake("kernel"), () => fake("sandbox"));
    await w.api.run({ kernel: "pi", params: {}, input: 1 });
    await w.api.run({ kernel: "program", params: { kind: "js", hash: "h", memoryLimitBytes: 1, params: null, code: "" }, input: 1 });
    expect(seen).toEqual(["kernel:pi", "sandbox:program"]);
  });

  it("gives a worker that ran one JS program to no other program, and sends code only when needed", async () => {
    const started: Array<{ runs: Array<{ hash: string; hasCode: boolean }>; terminated: boolean }> = [];
    const w = dedicatedProgramWorker({
      start() {
        const rec = { runs: [] as Array<{ hash: string; hasCode: boolean }>, terminated: false };
        started.push(rec);
        return {
          api: { run: async (t) => (rec.runs.push({ hash: (t.params as { hash: string }).hash, hasCode: (t.params as { code?: unknown }).code !== undefined }), { output: null, ms: 1 }) },
          terminate: () => (rec.terminated = true),
        };
      },
    });
    const prog = (kind: "js" | "wasm", hash: string): TaskRun => ({ kernel: "program", params: { kind, hash, code: "x", params: null, memoryLimitBytes: 1 }, input: null });
    await w.api.run(prog("wasm", "w1"));
    await w.api.run(prog("wasm", "w2")); // WASM programs share a worker
    await w.api.run(prog("js", "j1"));
    await w.api.run(prog("js", "j1")); // same JS program: same worker, code not sent again
    await w.api.run(prog("wasm", "w1")); // after JS: a fresh worker
    expect(started).toHaveLength(2);
    expect(started[0]).toEqual({
      runs: [{ hash: "w1", hasCode: true }, { hash: "w2", hasCode: true }, { hash: "j1", hasCode: true }, { hash: "j1", hasCode: false }],
      terminated: true,
    });
    expect(started[1].runs).toEqual([{ hash: "w1", hasCode: true }]);
  });
});
