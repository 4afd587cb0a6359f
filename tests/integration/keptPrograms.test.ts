// An iterative job's units on the headless volunteer: they share one evaluation of the
// program (kept from round to round, so its code stays compiled and warm), and a shard's
// bytes are sent to the program process once. Real program processes and vm contexts.
import http from "node:http";
import type { AddressInfo } from "node:net";
import crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNodePool } from "../../worker/node/pool";
import { InputCache } from "../../worker/runtime/inputCache";
import { BlobCache, prepareTask } from "../../worker/client/prepareTask";
import type { WorkerPool } from "../../worker/runtime/pool";
import type { TaskRun } from "../../worker/runtime/runTask";
import { MiB } from "../../worker/sandbox/abi";
import { compileJsProgram } from "../../worker/sandbox/compileJs";

const SOURCES = {
  // How many units this evaluation of the module has run.
  counter: `let calls = 0; export function run(input) { calls++; return { calls, input }; }`,
  // Fails when asked; counts like the counter otherwise.
  failing: `let calls = 0; export function run(input) { calls++; if (input === "fail") throw new Error("asked to"); return calls; }`,
  // Leaves a timer behind that throws once its unit is over; the next unit waits past it.
  lateTimer: `export async function run(input) {
    if (input === "leave") { setTimeout(() => { throw new Error("a late timer of the previous unit"); }, 20); return "left"; }
    await new Promise((r) => setTimeout(r, 80));
    return "unharmed";
  }`,
  // The sum of a byte input, and whether this unit may keep a reference to it.
  bytes: `let last; export function run(input) { const same = last === input; last = input; let s = 0; for (const b of input) s += b; input.fill(0); return { sum: s, len: input.length, same }; }`,
};
const scripts: Record<string, string> = {};
let pool: WorkerPool;

beforeAll(async () => {
  for (const [name, src] of Object.entries(SOURCES)) scripts[name] = (await compileJsProgram(src)).script;
  pool = createNodePool({ threads: 1 });
});
afterAll(() => pool?.terminate());

function task(name: string, input: unknown, extra: { keep?: string; inputRef?: string } = {}): TaskRun {
  return {
    kernel: "program",
    params: { kind: "js", hash: `js-${name}`, code: scripts[name], params: null, memoryLimitBytes: 64 * MiB, inputKind: input instanceof Uint8Array ? "bytes" : "json", ...extra },
    input,
  };
}
const run = async (t: TaskRun) => (await pool.run(t, "test", { timeoutMs: 10_000 })).output;

describe("an iterative job's units on one volunteer", () => {
  it("share one evaluation of the program per job; other work gets a fresh one", async () => {
    expect(await run(task("counter", 1, { keep: "job-a" }))).toEqual({ calls: 1, input: 1 });
    expect(await run(task("counter", 2, { keep: "job-a" }))).toEqual({ calls: 2, input: 2 });
    expect(await run(task("counter", 3, { keep: "job-a" }))).toEqual({ calls: 3, input: 3 });
    // Another job of the same program (maybe another consumer's) starts afresh, and so does a one-shot unit.
    expect(await run(task("counter", 4, { keep: "job-b" }))).toEqual({ calls: 1, input: 4 });
    expect(await run(task("counter", 5))).toEqual({ calls: 1, input: 5 });
    expect(await run(task("counter", 6))).toEqual({ calls: 1, input: 6 });
    // Job a's evaluation was given up when job b's unit came.
    expect(await run(task("counter", 7, { keep: "job-a" }))).toEqual({ calls: 1, input: 7 });
  });

  it("give up an evaluation whose unit failed", async () => {
    expect(await run(task("failing", "ok", { keep: "job-f" }))).toBe(1);
    expect(await run(task("failing", "ok", { keep: "job-f" }))).toBe(2);
    await expect(run(task("failing", "fail", { keep: "job-f" }))).rejects.toThrow(/asked to/);
    expect(await run(task("failing", "ok", { keep: "job-f" }))).toBe(1);
  });

  it("are not failed by what a previous unit left behind", async () => {
    expect(await run(task("lateTimer", "leave", { keep: "job-t" }))).toBe("left");
    // The previous unit's timer would throw 20 ms in; this unit runs 80 ms.
    expect(await run(task("lateTimer", "stay", { keep: "job-t" }))).toBe("unharmed");
  });

  it("get their shard's bytes afresh each unit, in one array per shard, though the process keeps them", async () => {
    const shard = new Uint8Array(300_000).map((_, i) => i % 251);
    const sum = shard.reduce((s, b) => s + b, 0);
    const first = await run(task("bytes", shard, { keep: "job-s", inputRef: "shard-0" }));
    const again = await run(task("bytes", shard, { keep: "job-s", inputRef: "shard-0" }));
    expect(first).toEqual({ sum, len: shard.length, same: false });
    // The same array (no 300 KB of garbage a unit), refilled: the previous unit zeroed it.
    expect(again).toEqual({ sum, len: shard.length, same: true });
    const other = new Uint8Array([1, 2, 3]);
    expect(await run(task("bytes", other, { keep: "job-s", inputRef: "shard-1" }))).toEqual({ sum: 6, len: 3, same: false });
    expect(await run(task("bytes", shard, { keep: "job-s", inputRef: "shard-0" }))).toEqual({ sum, len: shard.length, same: false });
  });
});

describe("the inputs a program process keeps", () => {
  it("drop the least recently used past their size, and refresh on use", () => {
    const c = new InputCache<string>(100);
    c.set("a", "A", 40);
    c.set("b", "B", 40);
    expect(c.get("a")).toBe("A"); // a is now the most recently used
    c.set("c", "C", 40); // 120 > 100: b goes
    expect(c.get("b")).toBeUndefined();
    expect(c.get("a")).toBe("A");
    expect(c.get("c")).toBe("C");
    c.set("big", "X", 500); // larger than the whole cache: kept alone
    expect([c.get("a"), c.get("c"), c.get("big")]).toEqual([undefined, undefined, "X"]);
  });
});

describe("a wire task of an iterative job", () => {
  let server: http.Server;
  let url: string;
  const blobs = new Map<string, Buffer>();
  const put = (b: Buffer) => {
    const h = crypto.createHash("sha256").update(b).digest("hex");
    blobs.set(h, b);
    return h;
  };
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const b = blobs.get((req.url ?? "").replace("/api/blobs/", ""));
      res.writeHead(b ? 200 : 404).end(b);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => server?.close());

  it("is kept under its job's id whatever round or slice it is of, and a blob input under its hash", async () => {
    const script = put(Buffer.from(scripts.counter));
    const shard = put(Buffer.from([1, 2, 3]));
    const cache = new BlobCache(url);
    const wire = (jobId: string, input: unknown) => ({
      taskId: "t1", jobId, kernel: "program", input,
      params: { program: { hash: "p", kind: "js", script }, params: null, limits: { timeMs: 1000, memoryMb: 64 } },
    });
    const round3 = await prepareTask(wire("job1~r3", { blob: shard, encoding: "bytes", context: { round: 3, broadcast: [1] } }) as never, cache);
    const slice = await prepareTask(wire("job1@256", { value: 1, context: { round: 4 } }) as never, cache);
    const oneShot = await prepareTask(wire("job2", { value: 1 }) as never, cache);
    expect(round3.params).toMatchObject({ keep: "job1", inputRef: shard, context: { round: 3, broadcast: [1] } });
    expect(slice.params).toMatchObject({ keep: "job1" });
    expect((oneShot.params as { keep?: string }).keep).toBeUndefined();
  });
});
