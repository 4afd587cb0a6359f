import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pi, type PiInput } from "../../worker/kernels/pi";
import type { WireTask } from "../../worker/protocol/messages";
import fs from "node:fs";
import path from "node:path";
import { createUserWithKey, runCli, sleep, startTestServer, waitFor, type TestServer } from "../helpers/server";
import { RawVolunteer, trpc, trpcError } from "../helpers/clients";

// No message may kill the server: hostile values at each entry point (a volunteer's results
// frame, tRPC inputs, a program's JSON input, uploads) are refused with a reason, or recorded
// as that volunteer's error, while /api/health answers throughout. Values are sent as raw JSON
// text where a client would refuse to build them (JSON.stringify overflows on 100,000 levels,
// and writes Infinity as null).

const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
const deepObject = (n: number) => '{"a":'.repeat(n) + "1" + "}".repeat(n);
const wide = (n: number) => `[${"0,".repeat(n - 1)}0]`;

let srv: TestServer;
let consumer: Awaited<ReturnType<typeof createUserWithKey>>;
const health: number[] = [];
let poller: NodeJS.Timeout | undefined;
const sockets: RawVolunteer[] = [];

beforeAll(async () => {
  // Spot checks off: a new host then gets every unit at once (no probation, no known-answer
  // tasks), so a hand-driven volunteer holds exactly the units it is to answer.
  srv = await startTestServer({ MAX_PROGRAM_BYTES: "1048576", SPOT_CHECKS: "off" });
  consumer = await createUserWithKey(srv.deps, "target@example.com");
  // /api/health, every 50 ms, from first to last.
  const probe = () =>
    fetch(`${srv.url}/api/health`).then(
      (r) => (health.push(r.status), r.body?.cancel()),
      () => health.push(0),
    );
  await probe();
  poller = setInterval(probe, 50);
});

afterAll(async () => {
  clearInterval(poller);
  for (const s of sockets) if (!s.closed) await s.close().catch(() => {});
  await srv?.close();
});

async function volunteer(threads: number) {
  const v = await RawVolunteer.connect(srv.url);
  sockets.push(v);
  v.hello(threads);
  await v.next("welcome");
  return v;
}

/** A tRPC call as raw JSON text: what a hand-written client can send. */
async function rawTrpc(procedure: string, body: string) {
  const res = await fetch(`${srv.url}/api/trpc/${procedure}`, {
    method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${consumer.apiKey}` }, body,
  });
  const json = (await res.json()) as { error?: { message: string; data?: { code?: string } } };
  return { status: res.status, code: json.error?.data?.code, message: json.error?.message ?? "" };
}

async function uploadProgram(source: string) {
  const res = await fetch(`${srv.url}/api/programs?name=echo.js`, { method: "POST", headers: { authorization: `Bearer ${consumer.apiKey}` }, body: source });
  expect(res.status).toBe(201);
  return ((await res.json()) as { hash: string }).hash;
}

const resultRow = (taskId: string) => srv.deps.db.result.findUnique({ where: { id: taskId }, select: { state: true, error: true, output: true } });
const jobState = async (id: string) => (await srv.deps.db.job.findUnique({ where: { id }, select: { state: true } }))?.state;

/** A fresh honest volunteer answers every task of the job it is sent (by `answer`) until the job completes. */
async function computeHonestly(id: string, answer: (t: WireTask) => unknown, what: string) {
  const honest = await volunteer(4);
  const done = new Set<string>();
  await waitFor(async () => {
    const fresh = honest.tasks().filter((t) => t.jobId === id && !done.has(t.taskId));
    if (fresh.length) {
      for (const t of fresh) done.add(t.taskId);
      honest.send({ type: "results", results: fresh.map((t) => ({ taskId: t.taskId, output: answer(t) })) });
    }
    return (await jobState(id)) === "completed";
  }, 20_000, what);
  return honest;
}

/** Sends one results frame (each result as JSON text) and returns its acknowledgement. */
const answer = (v: RawVolunteer, results: string[]) => v.request(`{"type":"results","results":[${results.join(",")}]}`, "ack");

describe("a volunteer's results frame", () => {
  it("turns hostile outputs for a pi task into that volunteer's error results, and the job completes with honest ones", async () => {
    const api = trpc(srv.url, consumer.apiKey);
    const attacker = await volunteer(4);
    const { id } = await api.jobs.submit.mutate({ kernel: "pi", chunks: 7, params: { samples: 7000, seed: 1 }, replication: { replicas: 1, adaptive: false } });
    const mine = (v: RawVolunteer) => v.tasks().filter((t) => t.jobId === id);
    await waitFor(() => mine(attacker).length >= 7, 5000, "the attacker to hold all 7 units");
    const tasks = mine(attacker).slice(0, 7);
    const attacks: Array<[output: string, reason: RegExp]> = [
      [wide(1_000_001), /^output has more than 1,000,000 values$/],
      [`"${"x".repeat(3 * 1024 * 1024)}"`, /^invalid output: /],
      ['{"inside":1e308,"samples":1e308}', /^invalid output: /],
      ['{"inside":1e999,"samples":1000}', /^output has a number out of range \(Infinity\)$/],
      ['{"__proto__":{"inside":0},"inside":500,"samples":1000}', /^output has a key named "__proto__"$/],
      // Nested within the frame's bound (64 levels and the frame's own) but past an output's.
      [`{"inside":500,"samples":1000,"z":${deep(64)}}`, /^output is nested more than 64 levels deep$/],
    ];
    for (const [i, [output, reason]] of attacks.entries()) {
      const ack = await answer(attacker, [`{"taskId":${JSON.stringify(tasks[i].taskId)},"output":${output}}`]);
      expect(ack.accepted).toEqual([]);
      expect(ack.rejected).toEqual([{ taskId: tasks[i].taskId, reason: expect.stringMatching(reason) }]);
    }
    // A frame nested deeper than that is refused whole, from its text, before it is parsed
    // (V8 takes a second to parse 4 MB of brackets): its results are not read at all.
    for (const output of [deep(20_000), `{"inside":500,"samples":1000,"z":${deepObject(20_000)}}`]) {
      const refused = await attacker.request(`{"type":"results","results":[{"taskId":${JSON.stringify(tasks[6].taskId)},"output":${output}}]}`, "error");
      expect(refused).toMatchObject({ code: "bad-message", message: "message nests deeper than 68 levels" });
    }
    // Still connected and heard: nothing above closed its socket.
    expect(attacker.closed).toBeUndefined();
    await srv.deps.coordinator.drain();
    for (const [i, [, reason]] of attacks.entries()) {
      const row = await resultRow(tasks[i].taskId);
      expect(row, tasks[i].taskId).toMatchObject({ state: "error", output: null, error: expect.stringMatching(reason) });
    }
    expect(await resultRow(tasks[6].taskId)).toBeNull();
    const record = await srv.deps.db.reliability.findUnique({ where: { id: `host:${attacker.identity.volunteerId}` } });
    expect(record).toMatchObject({ errors: attacks.length, valid: 0 });
    expect(await jobState(id)).toBe("running");

    // It leaves; an honest volunteer computes every unit and the job completes as if nothing happened.
    await attacker.close();
    const honest = await computeHonestly(id, (t) => pi.run(pi.params.parse(t.params), t.input as PiInput), "the pi job to complete");
    const result = (await api.jobs.result.query({ id })) as { estimate: number; samples: number };
    expect(result.samples).toBe(7000);
    expect(Math.abs(result.estimate - Math.PI)).toBeLessThan(0.2);
    await honest.close();
  });

  it("does the same for a program's task; the honest result sharing a frame with a hostile one stands", async () => {
    const api = trpc(srv.url, consumer.apiKey);
    const program = await uploadProgram("export function run(input) { return input; }");
    const attacker = await volunteer(4);
    const { id } = await api.jobs.submit.mutate({
      kernel: "program", program, input: { mode: "json", items: [0, 1, 2, 3, 4, 5] }, replication: { replicas: 1, adaptive: false },
    } as never);
    const mine = (v: RawVolunteer) => v.tasks().filter((t) => t.jobId === id);
    await waitFor(() => mine(attacker).length >= 6, 5000, "the attacker to hold all 6 units");
    const tasks: WireTask[] = mine(attacker).slice(0, 6);
    const item = (t: WireTask) => (t.input as { value: number }).value;
    const result = (t: WireTask, output: string) => `{"taskId":${JSON.stringify(t.taskId)},"output":${output}}`;

    // The frame (about 40 KB, nested 20,000 levels), alone or beside an honest
    // result: refused whole before it is parsed; the honest result sent again stands.
    for (const results of [[result(tasks[0], deep(20_000))], [result(tasks[4], deepObject(100_000)), result(tasks[5], String(item(tasks[5])))]]) {
      const refused = await attacker.request(`{"type":"results","results":[${results.join(",")}]}`, "error");
      expect(refused).toMatchObject({ code: "bad-message", message: "message nests deeper than 68 levels" });
    }
    const frames: Array<[string[], accepted: string[], rejected: Array<[WireTask, RegExp]>]> = [
      [[result(tasks[0], deep(65))], [], [[tasks[0], /^output is nested more than 64 levels deep$/]]],
      [[result(tasks[1], wide(1_200_000))], [], [[tasks[1], /^output has more than 1,000,000 values$/]]],
      [[result(tasks[2], "-1e999")], [], [[tasks[2], /^output has a number out of range \(-Infinity\)$/]]],
      [[result(tasks[3], '[{"ok":1},{"__proto__":{"polluted":true}}]')], [], [[tasks[3], /^output has a key named "__proto__"$/]]],
      // One hostile result and one honest one in the same frame.
      [[result(tasks[4], deepObject(65)), result(tasks[5], String(item(tasks[5])))], [tasks[5].taskId], [[tasks[4], /^output is nested more than 64 levels deep$/]]],
    ];
    for (const [results, accepted, rejected] of frames) {
      const ack = await answer(attacker, results);
      expect(ack.accepted).toEqual(accepted);
      expect(ack.rejected).toEqual(rejected.map(([t, reason]) => ({ taskId: t.taskId, reason: expect.stringMatching(reason) })));
    }
    // An unsolicited interactive answer nested 20,000 levels: refused, the socket stays.
    expect(await attacker.request(`{"type":"interactive-result","id":"nobody-asked","value":${deep(20_000)}}`, "error")).toMatchObject({ code: "bad-message" });
    expect(await answer(attacker, [result(tasks[0], "0")])).toMatchObject({ accepted: [], rejected: [{ taskId: tasks[0].taskId }] });
    expect(attacker.closed).toBeUndefined();
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
    await srv.deps.coordinator.drain();
    for (const [, , rejected] of frames) {
      for (const [t, reason] of rejected) expect(await resultRow(t.taskId)).toMatchObject({ state: "error", error: expect.stringMatching(reason) });
    }
    expect(await resultRow(tasks[5].taskId)).toMatchObject({ state: "valid", output: "5" });

    await attacker.close();
    const honest = await computeHonestly(id, item, "the program job to complete");
    expect(await api.jobs.result.query({ id })).toEqual([0, 1, 2, 3, 4, 5]);
    await honest.close();
  });

  it("records 1e308 and a 3 MB string from a program as the legitimate outputs they are", async () => {
    const api = trpc(srv.url, consumer.apiKey);
    const program = await uploadProgram("export function run(input) { return input; } // values");
    const v = await volunteer(8);
    const { id } = await api.jobs.submit.mutate({ kernel: "program", program, input: { mode: "json", items: [1, 2] }, replication: { replicas: 1, adaptive: false }, outputLimitBytes: 4 * 1024 * 1024 } as never);
    const mine = () => v.tasks().filter((t) => t.jobId === id);
    await waitFor(() => mine().length >= 2, 5000, "both units");
    const [a, b] = mine();
    const big = "A".repeat(3 * 1024 * 1024);
    const ack = await answer(v, [`{"taskId":${JSON.stringify(a.taskId)},"output":1e308}`, `{"taskId":${JSON.stringify(b.taskId)},"output":"${big}"}`]);
    expect(ack).toMatchObject({ accepted: [a.taskId, b.taskId], rejected: [] });
    await waitFor(async () => (await jobState(id)) === "completed", 10_000, "the job to complete");
    const out = (await api.jobs.result.query({ id })) as unknown[];
    expect(out[0]).toBe(1e308);
    expect(out[1] === big).toBe(true);
    await v.close();
  });
});

describe("a large results frame", () => {
  it("is digested off the loop, acknowledged before the frames sent after it, and agrees with the same outputs digested on the loop", async () => {
    const api = trpc(srv.url, consumer.apiKey);
    const program = await uploadProgram("export function run(input) { return input; } // large");
    const { id } = await api.jobs.submit.mutate({ kernel: "program", program, input: { mode: "json", items: [0, 1, 2] }, replication: { replicas: 2, adaptive: false } } as never);
    const [a, b] = [await volunteer(8), await volunteer(8)];
    // A unit's input is its item (in a wrapper): the same text for both replicas.
    const item = (t: WireTask) => JSON.stringify(t.input);
    const mine = (v: RawVolunteer) => v.tasks().filter((t) => t.jobId === id).sort((x, y) => item(x).localeCompare(item(y)));
    await waitFor(() => mine(a).length === 3 && mine(b).length === 3, 5000, "each volunteer holding a replica of every unit");
    // ~150 KiB an output: two in a frame pass THREAD_DIGEST_BYTES, one alone does not.
    const fill = "x".repeat(150 * 1024);
    const unsorted = (t: WireTask) => `{"z":"${fill}","a":${item(t)},"m":{"q":[1,2],"b":-0.5e-3}}`;
    const sorted = (t: WireTask) => JSON.stringify({ a: t.input, m: { b: -0.5e-3, q: [1, 2] }, z: fill });
    const result = (t: WireTask, output: string) => `{"taskId":${JSON.stringify(t.taskId)},"output":${output},"ms":2}`;
    const from = a.messages.length;
    const [t0, t1, t2] = mine(a);
    a.send(`{"type":"results","results":[${result(t0, unsorted(t0))},${result(t1, unsorted(t1))}]}`);
    a.send(`{"type":"results","results":[${result(t2, unsorted(t2))}]}`);
    const acks = await waitFor(() => {
      const got = a.messages.slice(from).filter((m) => m.type === "ack");
      return got.length >= 2 ? got : undefined;
    }, 10_000, "both acknowledgements");
    expect(acks).toEqual([
      { type: "ack", accepted: [t0.taskId, t1.taskId], rejected: [] },
      { type: "ack", accepted: [t2.taskId], rejected: [] },
    ]);
    // The other replicas, a frame each, below the threshold: digested on the loop.
    for (const t of mine(b)) await answer(b, [result(t, sorted(t))]);
    await waitFor(async () => (await jobState(id)) === "completed", 10_000, "the job to complete (every unit's replicas agreeing)");
    for (const t of [t0, t1, t2]) expect((await resultRow(t.taskId))?.output).toBe(sorted(t));
    expect(await api.jobs.result.query({ id })).toEqual([t0, t1, t2].map((t) => JSON.parse(sorted(t))));
    await Promise.all([a.close(), b.close()]);
  });
});

describe("tRPC inputs", () => {
  it("answer 400 with the reason for deep, wide, huge and out-of-range params and __proto__ keys", async () => {
    const jobsBefore = await srv.deps.db.job.count();
    const program = await uploadProgram("export function run(input) { return input; } // params");
    const cases: Array<[body: string, message: RegExp]> = [
      [`{"kernel":"program","program":"${program}","input":{"mode":"json","items":[1]},"params":{"x":${deepObject(20_000)}}}`, /^params: is nested more than 64 levels deep$/],
      [`{"kernel":"pi","chunks":1,"params":{"samples":2000,"x":${deep(100_000)}}}`, /^params: is nested more than 64 levels deep$/],
      [`{"kernel":"program","program":"${program}","input":{"mode":"json","items":[1]},"params":{"v":${wide(300_000)}}}`, /^params: has more than 250,000 values$/],
      [`{"kernel":"program","program":"${program}","input":{"mode":"json","items":[1]},"params":{"s":"${"x".repeat(300_000)}"}}`, /^params: has a string longer than 262,144 characters$/],
      [`{"kernel":"program","program":"${program}","input":{"mode":"json","items":[1]},"params":{"n":1e999}}`, /^params: has a number out of range \(Infinity\)$/],
      ['{"kernel":"pi","chunks":1,"params":{"samples":2000,"__proto__":{"samples":1e11}}}', /^params: has a key named "__proto__"$/],
      ['{"kernel":"program","program":"0000000000000000000000000000000000000000000000000000000000000000","input":{"mode":"json","items":[{"__proto__":1}]}}', /^input\.items: has a key named "__proto__"$/],
      ['{"kernel":"pi","chunks":1,"params":[1,2]}', /^params: must be a JSON object$/],
      ['{"kernel":"pi","chunks":1,"params":{"samples":1e308}}', /^Invalid pi parameter samples: /],
      // Past 2^53 zod's int() refuses it (a whole number it cannot count exactly).
      ['{"kernel":"pi","chunks":1e308,"params":{"samples":2000}}', /^chunks: The chunk count must be a whole number\.$/],
      ['{"kernel":"pi","chunks":1e15,"params":{"samples":2000}}', /^Too many chunks: 1000000000000000\. /],
      ['{"kernel":"pi","chunks":1,"params":{"samples":2000,"bogus":1}}', /^Unknown pi parameter "bogus"\. Its parameters are: samples, seed\.$/],
      ['{"kernel":"primes","chunks":1,"params":{"from":0,"to":5000,"form":1,"too":2}}', /^Unknown primes parameters "form", "too"\. Its parameters are: from, to\.$/],
      ['{"kernel":"mandelbrot","chunks":1,"params":{"widht":64}}', /^Unknown mandelbrot parameter "widht"\./],
      ['{"kernel":"kmeans","chunks":1,"params":{"k":3,"K":4}}', /^Unknown kmeans parameter "K"\./],
      [`{"kernel":"pi","chunks":1,"params":{${Array.from({ length: 7 }, (_, i) => `"${String(i).repeat(100)}":1`).join(",")}}}`, /^Unknown pi parameters "0{64}…", "1{64}…", "2{64}…", "3{64}…", "4{64}…", and 2 more\. /],
    ];
    for (const [body, message] of cases) {
      const r = await rawTrpc("jobs.submit", body);
      expect({ status: r.status, code: r.code }, `${body.slice(0, 120)} → ${r.message.slice(0, 200)}`).toEqual({ status: 400, code: "BAD_REQUEST" });
      expect(r.message, body.slice(0, 120)).toMatch(message);
    }
    // The typed client gets the same answer for an unknown parameter.
    expect(await trpcError(trpc(srv.url, consumer.apiKey).jobs.submit.mutate({ kernel: "pi", chunks: 1, params: { samples: 2000, sample: 5 } }))).toEqual({
      code: "BAD_REQUEST", httpStatus: 400, message: 'Unknown pi parameter "sample". Its parameters are: samples, seed.',
    });
    // Past the 1 MiB body limit: 413 before anything is parsed.
    const huge = await rawTrpc("jobs.submit", `{"kernel":"pi","chunks":1,"params":{"s":"${"x".repeat(2 * 1024 * 1024)}"}}`);
    expect(huge.status).toBe(413);
    expect(await srv.deps.db.job.count()).toBe(jobsBefore);
  });

  it("answer 400, not 500, for a program's JSON input item nested 100,000 levels (submit and estimate)", async () => {
    const program = await uploadProgram("export function run(input) { return input; } // items");
    const submit = await rawTrpc("jobs.submit", `{"kernel":"program","program":"${program}","input":{"mode":"json","items":[1,${deep(100_000)}]}}`);
    expect(submit).toEqual({ status: 400, code: "BAD_REQUEST", message: "input.items: is nested more than 64 levels deep" });
    const items = await rawTrpc("jobs.submit", `{"kernel":"program","program":"${program}","input":{"mode":"json","items":${wide(300_000)}}}`);
    expect(items).toMatchObject({ status: 400, message: expect.stringMatching(/^input\.items: has more than 250,000 values/) });
    // A query travels in the URL: 2,000 levels fit in it.
    const input = encodeURIComponent(`{"kernel":"program","input":{"mode":"json","items":[${deep(2000)}]}}`);
    const res = await fetch(`${srv.url}/api/trpc/jobs.estimate?input=${input}`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe("input.items: is nested more than 64 levels deep");
  });

  it("the CLI gives the same reason for a deep --input-json or --params, instead of a stack overflow of its own", async () => {
    const file = path.join(srv.dir, "deep.json");
    fs.writeFileSync(file, `[1,${deep(100_000)}]`);
    fs.writeFileSync(path.join(srv.dir, "echo.js"), "export function run(input) { return input; }");
    const env = { TABGRID_URL: srv.url, TABGRID_API_KEY: consumer.apiKey };
    const r = await runCli(["submit", "--program", path.join(srv.dir, "echo.js"), "--input-json", file], env);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.stderr).toContain("--input-json is nested more than 64 levels deep");
    expect(r.stderr).not.toMatch(/Maximum call stack|RangeError/);
    const p = await runCli(["submit", "pi", "--chunks", "2", "--params", `{"samples":${deepObject(5000)}}`], env);
    expect(p.code, p.stderr).not.toBe(0);
    expect(p.stderr).toContain("--params is nested more than 64 levels deep");
  });

  it("answer 4xx for hostile ad heartbeats", async () => {
    const beat = (body: string) => rawTrpc("ads.heartbeat", body);
    const deepVisible = await beat(`{"sessionId":"s1","visible":${deep(100_000)}}`);
    expect(deepVisible).toMatchObject({ status: 400, code: "BAD_REQUEST", message: expect.stringMatching(/^visible: /) });
    // Extra members are dropped by the schema, never walked: the session is simply unknown.
    expect(await beat(`{"sessionId":"s1","visible":true,"extra":${deepObject(100_000)},"__proto__":{"x":1}}`)).toMatchObject({ status: 404, code: "NOT_FOUND" });
    expect(await beat(`{"sessionId":"${"s".repeat(300_000)}","visible":true}`)).toMatchObject({ status: 400, message: expect.stringMatching(/^sessionId: /) });
  });
});

describe("uploads and HTTP handlers", () => {
  it("refuse a deep JSON file as a program with the reason, and store one as opaque data", async () => {
    const post = (kind: string, body: string) => fetch(`${srv.url}/api/${kind}?name=deep.json`, { method: "POST", headers: { authorization: `Bearer ${consumer.apiKey}` }, body });
    const asProgram = await post("programs", deep(100_000));
    expect(asProgram.status).toBe(400);
    expect(((await asProgram.json()) as { error: string }).error).toMatch(/^Invalid program: the program does not export a function named run/);
    // Data files are bytes, split by lines or blocks, never parsed as JSON here.
    const asData = await post("data", deep(100_000));
    expect(asData.status).toBe(201);
  });

  it("answers 413 to a chunked upload over the limit, rather than dropping the connection", async () => {
    const url = new URL(`${srv.url}/api/programs?name=big.js`);
    const answer = await new Promise<{ status: number; body: string; connection?: string }>((resolve, reject) => {
      const req = http.request(url, { method: "POST", headers: { authorization: `Bearer ${consumer.apiKey}`, "transfer-encoding": "chunked" } }, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode!, body, connection: res.headers.connection }));
      });
      req.on("error", reject);
      // 1.5 MiB in 64 KiB chunks against a 1 MiB limit, then the client stops (it got its answer).
      const chunk = Buffer.alloc(64 * 1024, 32);
      let sent = 0;
      const pump = () => {
        while (sent < 24) {
          sent++;
          if (!req.write(chunk)) return void req.once("drain", pump);
        }
        req.end();
      };
      pump();
    });
    expect(answer).toEqual({ status: 413, body: JSON.stringify({ error: "The upload is larger than the limit of 1 MiB." }), connection: "close" });
  });

  it("takes an upload cut off halfway as the client's problem, not a server failure", async () => {
    await new Promise<void>((resolve) => {
      const req = http.request(new URL(`${srv.url}/api/data?name=cut.bin`), {
        method: "POST", headers: { authorization: `Bearer ${consumer.apiKey}`, "content-length": "100000" },
      });
      req.on("error", () => resolve());
      req.write(Buffer.alloc(10_000, 1), () => setTimeout(() => req.destroy(), 50));
    });
    await sleep(200);
    expect((await fetch(`${srv.url}/api/health`)).status).toBe(200);
    // server/app.ts logs a handler that threw (answered 500); this one answered 400.
    expect(srv.logs.filter((l) => /request POST \/api\/data failed/.test(l))).toEqual([]);
    expect(await srv.deps.db.dataFile.count({ where: { name: "cut.bin" } })).toBe(0);
  });

  it("turns a handler's unexpected failure into a 500 JSON answer (HTTP and tRPC), and carries on", async () => {
    const blobs = srv.deps.blobs;
    const put = blobs.put;
    blobs.put = () => Promise.reject(new Error("disk on fire"));
    try {
      const res = await fetch(`${srv.url}/api/data?name=x.bin`, { method: "POST", headers: { authorization: `Bearer ${consumer.apiKey}` }, body: "some bytes" });
      expect(res.status).toBe(500);
      expect(res.headers.get("content-type")).toMatch(/application\/json/);
      expect(JSON.stringify(await res.json())).not.toMatch(/disk on fire/);
      // A program input item over the inline limit is stored as a blob at submit.
      const program = srv.deps.db.program.findFirst({ select: { hash: true } });
      const e = await rawTrpc("jobs.submit", JSON.stringify({ kernel: "program", program: (await program)!.hash, input: { mode: "json", items: ["x".repeat(20_000)] } }));
      expect(e).toMatchObject({ status: 500, code: "INTERNAL_SERVER_ERROR" });
    } finally {
      blobs.put = put;
    }
  });
});

describe("the server", () => {
  it("answered /api/health with 200 throughout", async () => {
    const res = await fetch(`${srv.url}/api/health`);
    expect(res.status).toBe(200);
    expect(health.length).toBeGreaterThan(20);
    expect(health.filter((s) => s !== 200)).toEqual([]);
  });
});

describe("a socket before its hello", () => {
  it("is closed by a frame larger than a hello could be, before anything parses it", async () => {
    const stranger = await RawVolunteer.connect(srv.url);
    sockets.push(stranger);
    stranger.send(`{"type":"hello","pad":"${"x".repeat(100 * 1024)}"}`);
    expect(await stranger.waitClosed()).toEqual({ code: 1009, reason: "a hello is at most 64 KiB" });
    // A hello of ordinary size is still heard.
    const volunteer = await RawVolunteer.connect(srv.url);
    sockets.push(volunteer);
    volunteer.hello(1);
    expect(await volunteer.next("welcome")).toMatchObject({ volunteerId: volunteer.identity.volunteerId });
  });
});
