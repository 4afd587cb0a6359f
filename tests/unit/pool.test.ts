import { afterEach, describe, expect, it, vi } from "vitest";
import { WorkerPool, type PoolWorker } from "../../worker/runtime/pool";
import type { TaskResult, TaskRun } from "../../worker/runtime/runTask";

/** An in-process worker whose tasks the test finishes by hand. */
class FakeWorker implements PoolWorker {
  terminated = false;
  open: Array<{ task: TaskRun; resolve(r: TaskResult): void; reject(e: unknown): void }> = [];
  api = {
    run: (task: TaskRun) =>
      new Promise<TaskResult>((resolve, reject) => {
        if (this.terminated) throw new Error("run on a terminated worker");
        this.open.push({ task, resolve, reject });
      }),
  };
  terminate() {
    this.terminated = true;
  }
  /** Finishes the oldest open task, reporting `ms` of compute. */
  finish(ms = 10, output: unknown = "ok") {
    const call = this.open.shift();
    if (!call) throw new Error("no open task");
    call.resolve({ output, ms });
  }
  fail(error: Error) {
    this.open.shift()!.reject(error);
  }
}

function fakes() {
  const workers: FakeWorker[] = [];
  const factory = () => {
    const w = new FakeWorker();
    workers.push(w);
    return w;
  };
  const live = () => workers.filter((w) => !w.terminated);
  const running = () => workers.reduce((n, w) => n + w.open.length, 0);
  return { workers, factory, live, running };
}

const task = (i: number): TaskRun => ({ kernel: "fake", params: {}, input: { i } });

/** Runs a task whose outcome the test does not follow (terminate() will reject it). */
const background = (p: Promise<unknown>) => void p.catch(() => {});

/** Lets promise callbacks run (setImmediate is left real by the fake timers below). */
const settle = () => new Promise<void>((r) => setImmediate(r));

afterEach(() => {
  vi.useRealTimers();
});

describe("WorkerPool", () => {
  it("never runs more tasks than threads, and runs them all", async () => {
    let now = 0;
    let max = 0;
    const factory = (): PoolWorker => ({
      api: {
        async run(t) {
          max = Math.max(max, ++now);
          await new Promise((r) => setTimeout(r, 1 + ((t.input as { i: number }).i % 4)));
          now--;
          return { output: (t.input as { i: number }).i * 2, ms: 1 };
        },
      },
      terminate() {},
    });
    const pool = new WorkerPool(factory, { threads: 3 });
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.run(task(i))));
    expect(results.map((r) => r.output)).toEqual(Array.from({ length: 20 }, (_, i) => i * 2));
    expect(max).toBe(3);
    expect(pool.states().map((s) => s.done).reduce((a, b) => a + b)).toBe(20);
    pool.terminate();
  });

  it("queues tasks first come first served until a worker is free", async () => {
    const f = fakes();
    const pool = new WorkerPool(f.factory, { threads: 1 });
    const a = pool.run(task(1));
    const b = pool.run(task(2));
    await settle();
    expect(f.running()).toBe(1);
    expect(pool.pending).toBe(1);
    f.workers[0].finish(5, "a");
    await settle();
    expect(f.workers[0].open[0].task.input).toEqual({ i: 2 });
    f.workers[0].finish(5, "b");
    expect((await a).output).toBe("a");
    expect((await b).output).toBe("b");
    pool.terminate();
  });

  it("makes a throttled worker rest ms*(1-throttle)/throttle after each task", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const f = fakes();
    const pool = new WorkerPool(f.factory, { threads: 1, throttle: 0.25 });
    background(pool.run(task(1)));
    const second = pool.run(task(2));
    await settle();
    f.workers[0].finish(100);
    await settle();
    // 100 ms of compute at 25% → 300 ms of rest before the next task.
    expect(pool.states()[0].state).toBe("resting");
    vi.advanceTimersByTime(299);
    expect(pool.states()[0].state).toBe("resting");
    expect(f.running()).toBe(0);
    vi.advanceTimersByTime(1);
    expect(pool.states()[0]).toMatchObject({ state: "busy", done: 1 });
    f.workers[0].finish(100);
    await second;
    pool.terminate();
  });

  it("applies a new throttle to a worker that is already resting", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const f = fakes();
    const pool = new WorkerPool(f.factory, { threads: 1, throttle: 0.1 });
    background(pool.run(task(1)));
    background(pool.run(task(2)));
    await settle();
    f.workers[0].finish(100); // 900 ms of rest at 10%
    await settle();
    vi.advanceTimersByTime(50);
    pool.setThrottle(0.5); // 100 ms of rest in all, 50 already done
    vi.advanceTimersByTime(49);
    expect(pool.states()[0].state).toBe("resting");
    vi.advanceTimersByTime(1);
    expect(pool.states()[0].state).toBe("busy");
    pool.setThrottle(7);
    expect(pool.throttle).toBe(1);
    pool.setThrottle(0);
    expect(pool.throttle).toBe(0.05);
    pool.terminate();
  });

  it("starts nothing while paused, lets running tasks finish, and resumes", async () => {
    const f = fakes();
    const pool = new WorkerPool(f.factory, { threads: 2 });
    const first = pool.run(task(1));
    await settle();
    pool.pause();
    const queued = [pool.run(task(2)), pool.run(task(3))];
    await settle();
    expect(f.running()).toBe(1);
    expect(pool.states().map((s) => s.state).sort()).toEqual(["busy", "paused"]);
    f.workers[0].finish();
    await first;
    await settle();
    expect(f.running()).toBe(0);
    expect(pool.states().map((s) => s.state)).toEqual(["paused", "paused"]);
    pool.resume();
    expect(f.running()).toBe(2);
    for (const w of f.workers) w.finish();
    await Promise.all(queued);
    pool.terminate();
  });

  it("grows at once and shrinks idle workers first, busy ones when they finish", async () => {
    const f = fakes();
    const pool = new WorkerPool(f.factory, { threads: 1 });
    const tasks = Array.from({ length: 3 }, (_, i) => pool.run(task(i)));
    await settle();
    expect(f.running()).toBe(1);
    pool.setThreads(4);
    expect(f.live()).toHaveLength(4);
    expect(f.running()).toBe(3);
    expect(pool.states().filter((s) => s.state === "idle")).toHaveLength(1);

    pool.setThreads(2);
    // The idle worker leaves now; one busy worker leaves after its task.
    expect(f.live()).toHaveLength(3);
    expect(pool.states().every((s) => s.state === "busy")).toBe(true);
    const more = [pool.run(task(10)), pool.run(task(11))];
    for (const w of f.live()) w.finish();
    await Promise.all(tasks);
    await settle();
    expect(f.live()).toHaveLength(2);
    expect(pool.states()).toHaveLength(2);
    expect(f.running()).toBe(2);
    for (const w of f.live()) w.finish();
    await Promise.all(more);

    pool.setThreads(0);
    expect(f.live()).toHaveLength(0);
    pool.terminate();
  });

  it("keeps a retiring worker when the pool grows again before it finishes", async () => {
    const f = fakes();
    const pool = new WorkerPool(f.factory, { threads: 2 });
    const tasks = [pool.run(task(1)), pool.run(task(2))];
    await settle();
    pool.setThreads(1);
    pool.setThreads(2);
    expect(f.workers).toHaveLength(2);
    for (const w of f.workers) w.finish();
    await Promise.all(tasks);
    await settle();
    expect(f.live()).toHaveLength(2);
    pool.terminate();
  });

  it("terminate stops every worker and rejects running and queued tasks with AbortError", async () => {
    const f = fakes();
    const pool = new WorkerPool(f.factory, { threads: 2 });
    const tasks = Array.from({ length: 5 }, (_, i) => pool.run(task(i)));
    await settle();
    pool.terminate();
    const outcomes = await Promise.allSettled(tasks);
    for (const o of outcomes) {
      expect(o.status).toBe("rejected");
      expect((o as PromiseRejectedResult).reason).toBeInstanceOf(Error);
      expect((o as PromiseRejectedResult).reason.name).toBe("AbortError");
    }
    expect(f.live()).toHaveLength(0);
    expect(pool.states()).toEqual([]);
    await expect(pool.run(task(9))).rejects.toMatchObject({ name: "AbortError" });
    // A worker answering after the end changes nothing.
    f.workers[0].finish();
    await settle();
    expect(pool.states()).toEqual([]);
  });

  it("rejects a failed task with its error and replaces the worker", async () => {
    const f = fakes();
    const pool = new WorkerPool(f.factory, { threads: 1 });
    const bad = pool.run(task(1));
    const good = pool.run(task(2));
    await settle();
    f.workers[0].fail(new Error("kernel crashed"));
    await expect(bad).rejects.toThrow("kernel crashed");
    await settle();
    expect(f.workers).toHaveLength(2);
    expect(f.workers[0].terminated).toBe(true);
    expect(f.workers[1].open[0].task.input).toEqual({ i: 2 });
    f.workers[1].finish(1, "fine");
    expect((await good).output).toBe("fine");
    expect(pool.states()).toEqual([{ id: 1, state: "idle", done: 1 }]);
    pool.terminate();
  });

  it("rejects a task whose worker throws synchronously", async () => {
    const factory = (): PoolWorker => ({
      api: {
        run() {
          throw new Error("no");
        },
      },
      terminate() {},
    });
    const pool = new WorkerPool(factory, { threads: 1 });
    await expect(pool.run(task(1))).rejects.toThrow("no");
    pool.terminate();
  });

  it("reports state changes to subscribers until they unsubscribe", async () => {
    const f = fakes();
    const pool = new WorkerPool(f.factory, { threads: 1 });
    const seen: string[] = [];
    const off = pool.onChange(() => seen.push(pool.states().map((s) => `${s.state}:${s.task ?? ""}`).join()));
    const t = pool.run(task(1), "unit-7");
    await settle();
    f.workers[0].finish();
    await t;
    expect(seen).toContain("busy:unit-7");
    expect(seen.at(-1)).toBe("idle:");
    off();
    const n = seen.length;
    pool.pause();
    expect(seen).toHaveLength(n);
    pool.terminate();
  });
});

/** A worker that queues tasks handed to it ahead (a program process): the oldest open one runs. */
class QueueingWorker extends FakeWorker {
  takesAhead = true;
  withdrawn: TaskRun[] = [];
  override api = {
    run: (task: TaskRun, _onProgress?: (f: number) => void, withdraw?: AbortSignal) =>
      new Promise<TaskResult>((resolve, reject) => {
        if (this.terminated) throw new Error("run on a terminated worker");
        const call = { task, resolve, reject };
        this.open.push(call);
        withdraw?.addEventListener("abort", () => {
          const i = this.open.indexOf(call);
          if (i > 0) {
            this.open.splice(i, 1);
            this.withdrawn.push(task);
            reject(Object.assign(new Error("withdrawn"), { name: "AbortError" }));
          }
        });
      }),
  };
  accepts = () => this.takesAhead && !this.terminated;
  override terminate() {
    super.terminate();
    for (const call of this.open.splice(0)) call.reject(new Error("Program process terminated"));
  }
}

function queueingFakes() {
  const workers: QueueingWorker[] = [];
  const factory = () => {
    const w = new QueueingWorker();
    workers.push(w);
    return w;
  };
  return { workers, factory };
}

const ids = (w: FakeWorker) => w.open.map((c) => (c.task.input as { i: number }).i);

describe("WorkerPool, tasks handed ahead to a worker that queues them", () => {
  it("gives a busy worker the next task at once, and only one; it becomes the running task when the first ends", async () => {
    const f = queueingFakes();
    const pool = new WorkerPool(f.factory, { threads: 1 });
    const runs = [1, 2, 3].map((i) => pool.run(task(i), `t${i}`));
    await settle();
    const w = f.workers[0];
    expect(ids(w)).toEqual([1, 2]);
    expect(pool.pending).toBe(1);
    w.finish(5, "one");
    await expect(runs[0]).resolves.toMatchObject({ output: "one" });
    await settle();
    // 2 runs now, 3 was handed ahead behind it.
    expect(pool.states()).toMatchObject([{ state: "busy", task: "t2", done: 1 }]);
    expect(ids(w)).toEqual([2, 3]);
    w.finish(5, "two");
    w.finish(5, "three");
    await expect(Promise.all(runs.slice(1))).resolves.toMatchObject([{ output: "two" }, { output: "three" }]);
    await settle();
    expect(pool.states()).toMatchObject([{ state: "idle", done: 3 }]);
    expect(f.workers).toHaveLength(1);
    pool.terminate();
  });

  it("hands nothing ahead to a worker that does not take it, nor while throttled", async () => {
    const f = queueingFakes();
    const pool = new WorkerPool(f.factory, { threads: 1, throttle: 0.5 });
    background(pool.run(task(1)));
    background(pool.run(task(2)));
    await settle();
    expect(ids(f.workers[0])).toEqual([1]);
    f.workers[0].takesAhead = false;
    pool.setThrottle(1);
    background(pool.run(task(3)));
    await settle();
    expect(ids(f.workers[0])).toEqual([1]);
    expect(pool.pending).toBe(2);
    pool.terminate();
  });

  it("counts a handed-ahead task's time limit from its predecessor's end; a time-out puts the task behind it back in line", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const f = queueingFakes();
    const pool = new WorkerPool(f.factory, { threads: 1 });
    const a = pool.run(task(1), "a", { timeoutMs: 1000 });
    const b = pool.run(task(2), "b", { timeoutMs: 1000 });
    const c = pool.run(task(3), "c", { timeoutMs: 1000 });
    const bOutcome = b.then(() => "done", (e: Error) => e.message);
    await settle();
    vi.advanceTimersByTime(900);
    f.workers[0].finish(900, "a");
    await expect(a).resolves.toMatchObject({ output: "a" });
    await settle();
    // b started 900 ms after it was handed over; its second is its own.
    vi.advanceTimersByTime(900);
    await settle();
    expect(ids(f.workers[0])).toEqual([2, 3]);
    vi.advanceTimersByTime(100);
    await expect(bOutcome).resolves.toBe("time limit of 1 s exceeded");
    await settle();
    // The worker was replaced; c, queued in the one that was stopped, runs on the new one.
    expect(f.workers[0].terminated).toBe(true);
    expect(ids(f.workers[1])).toEqual([3]);
    f.workers[1].finish(3, "c");
    await expect(c).resolves.toMatchObject({ output: "c" });
    pool.terminate();
  });

  it("after a failed task, runs the one handed ahead on the fresh worker", async () => {
    const f = queueingFakes();
    const pool = new WorkerPool(f.factory, { threads: 1 });
    const a = pool.run(task(1));
    const b = pool.run(task(2));
    await settle();
    f.workers[0].fail(new Error("boom"));
    await expect(a).rejects.toThrow("boom");
    await settle();
    expect(ids(f.workers[1])).toEqual([2]);
    f.workers[1].finish(1, "b");
    await expect(b).resolves.toMatchObject({ output: "b" });
    pool.terminate();
  });

  it("takes a task back from behind a long one when another worker goes idle", async () => {
    const f = queueingFakes();
    const pool = new WorkerPool(f.factory, { threads: 2 });
    const runs = [1, 2, 3, 4].map((i) => pool.run(task(i)));
    await settle();
    const [long, short] = f.workers;
    expect([ids(long), ids(short)]).toEqual([[1, 3], [2, 4]]);
    short.finish(1, "two");
    await settle();
    short.finish(1, "four");
    await settle();
    // The second worker is idle while 3 waits behind the long task 1: it takes 3 over.
    expect(long.withdrawn.map((t) => (t.input as { i: number }).i)).toEqual([3]);
    expect([ids(long), ids(short)]).toEqual([[1], [3]]);
    short.finish(1, "three");
    long.finish(1, "one");
    await expect(Promise.all(runs)).resolves.toMatchObject([{ output: "one" }, { output: "two" }, { output: "three" }, { output: "four" }]);
    pool.terminate();
  });

  it("terminate rejects the task handed ahead too", async () => {
    const f = queueingFakes();
    const pool = new WorkerPool(f.factory, { threads: 1 });
    const a = pool.run(task(1));
    const b = pool.run(task(2));
    await settle();
    pool.terminate();
    await expect(a).rejects.toMatchObject({ name: "AbortError" });
    await expect(b).rejects.toMatchObject({ name: "AbortError" });
  });

  it("a shrinking pool puts the task handed to a retiring worker back in line", async () => {
    const f = queueingFakes();
    const pool = new WorkerPool(f.factory, { threads: 2 });
    const runs = [1, 2, 3].map((i) => pool.run(task(i)));
    await settle();
    expect([ids(f.workers[0]), ids(f.workers[1])]).toEqual([[1, 3], [2]]);
    pool.setThreads(1);
    // The newest busy worker retires: worker 1 after task 2. Worker 0 keeps 3 behind 1.
    f.workers[1].finish(1, "two");
    await settle();
    expect(f.workers[1].terminated).toBe(true);
    f.workers[0].finish(1, "one");
    await settle();
    f.workers[0].finish(1, "three");
    await expect(Promise.all(runs)).resolves.toMatchObject([{ output: "one" }, { output: "two" }, { output: "three" }]);
    pool.terminate();
  });
});
