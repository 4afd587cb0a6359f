import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createUserWithKey, repoRoot, runCli, startCliVolunteer, startTestServer, waitFor, type CliVolunteer, type TestServer,
} from "../helpers/server";
import { trpc, trpcError } from "../helpers/clients";
import { auditLedger } from "../../server/services/credits/ledger";
import { closeStepSandbox, keptStepThread } from "../../worker/sandbox/stepSandbox";

// Consumers' own programs end to end: upload (content-addressed, checked, size-limited),
// input split by lines / ranges / byte blocks, computed by real CLI volunteers in their
// sandbox, outputs per unit and merged (concatenated or by the program's own reduce).
describe("uploaded programs", () => {
  let srv: TestServer;
  let user: Awaited<ReturnType<typeof createUserWithKey>>;
  let volunteers: CliVolunteer[] = [];
  const examples = path.join(repoRoot, "examples");

  const post = (kind: "programs" | "data", body: Buffer | string, name: string, key = user.apiKey) =>
    fetch(`${srv.url}/api/${kind}?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: typeof body === "string" ? body : new Uint8Array(body) });

  beforeAll(async () => {
    execFileSync(process.execPath, [path.join(repoRoot, "scripts", "build-examples.mjs")], { cwd: repoRoot });
    srv = await startTestServer({ MAX_PROGRAM_BYTES: "65536", MAX_DATA_BYTES: "1048576" });
    user = await createUserWithKey(srv.deps, "coder@example.com");
    volunteers = [startCliVolunteer(srv.url, 1, { dir: srv.dir }), startCliVolunteer(srv.url, 1, { dir: srv.dir })];
    await waitFor(() => srv.deps.coordinator.volunteers().length === 2, 30_000, "two volunteers");
  });
  afterAll(async () => {
    await Promise.all(volunteers.map((v) => v.stop()));
    await srv?.close();
  });

  async function runToEnd(input: Record<string, unknown>) {
    const api = trpc(srv.url, user.apiKey);
    const { id } = await api.jobs.submit.mutate({ kernel: "program", ...input } as never);
    await waitFor(async () => ["completed", "failed"].includes((await api.jobs.get.query({ id })).state), 60_000, `program job ${id}`);
    return { id, job: await api.jobs.get.query({ id }), result: await api.jobs.result.query({ id }), units: await api.jobs.unitOutputs.query({ id }) };
  }

  it("starts the step sandbox when a program that steps is uploaded (its first step would wait ~0.3 s for it), not for one that does not", async () => {
    closeStepSandbox();
    expect(keptStepThread()).toBeUndefined();
    expect((await post("programs", "export function run(x) { return x; }\n", "plain.js")).status).toBe(201);
    expect(keptStepThread()).toBeUndefined();
    const steps = "export function run(x) { return x; }\nexport function step(m, s, ctx) { return { done: true, result: m }; }\n";
    expect((await post("programs", steps, "steps.js")).status).toBe(201);
    expect(keptStepThread()).toBe(srv.deps.env.WASM_MEMORY_LIMIT_MB);
    // The same program again (already stored) warms it too.
    closeStepSandbox();
    expect((await post("programs", steps, "steps-again.js")).status).toBe(201);
    expect(keptStepThread()).toBe(srv.deps.env.WASM_MEMORY_LIMIT_MB);
  });

  it("lets two consumers who upload the same bytes each split them, and nobody else", async () => {
    const program = await (await post("programs", fs.readFileSync(path.join(examples, "js", "wordcount.js")), "wordcount.js")).json();
    const other = await createUserWithKey(srv.deps, "same-data@example.com");
    const stranger = await createUserWithKey(srv.deps, "stranger@example.com");
    // Each runs the program from an upload of its own (a job runs only its owner's programs).
    for (const u of [other, stranger]) await post("programs", fs.readFileSync(path.join(examples, "js", "wordcount.js")), "wordcount.js", u.apiKey);
    const text = "one two two\nthree three three\n";
    const mine = await (await post("data", text, "mine.txt")).json();
    const theirs = await (await post("data", text, "theirs.txt", other.apiKey)).json();
    expect(theirs.hash).toBe(mine.hash);
    const submit = (key: string) => trpc(srv.url, key).jobs.submit.mutate({
      kernel: "program", program: program.hash, input: { mode: "lines", data: mine.hash }, chunks: 2, merge: "reduce",
    } as never);
    // The second uploader's job is accepted (it was refused as "No data file" while the first owned the row).
    await expect(submit(other.apiKey)).resolves.toMatchObject({ id: expect.any(String) });
    await expect(submit(user.apiKey)).resolves.toMatchObject({ id: expect.any(String) });
    await expect(submit(stranger.apiKey)).rejects.toThrow(/No data file [0-9a-f]{64}: upload it first/);
    // Nor does an estimate tell a stranger (or an anonymous caller) that the file exists, or its size.
    const estimate = (key?: string) => trpc(srv.url, key).jobs.estimate.query({
      kernel: "program", program: program.hash, input: { mode: "blocks", data: mine.hash, blockBytes: 8 }, merge: "concat",
    } as never);
    await expect(estimate(other.apiKey)).resolves.toMatchObject({ chunks: 4 });
    await expect(estimate(stranger.apiKey)).rejects.toThrow(/No data file [0-9a-f]{64}: upload it first/);
    // Anonymous, it has no program to run either: told so first.
    await expect(estimate()).rejects.toThrow(/No program [0-9a-f]{64} of yours/);
  });

  it("counts words of a text file split by lines and merges them with the program's reduce", async () => {
    const res = await post("programs", fs.readFileSync(path.join(examples, "js", "wordcount.js")), "wordcount.js");
    expect(res.status).toBe(201);
    const program = await res.json();
    expect(program).toMatchObject({ kind: "js", hasReduce: true, exports: expect.arrayContaining(["run", "reduce"]) });
    // Content-addressed: the same bytes give the same program.
    expect((await (await post("programs", fs.readFileSync(path.join(examples, "js", "wordcount.js")), "again.js")).json()).hash).toBe(program.hash);

    const text = fs.readFileSync(path.join(examples, "js", "sample.txt"), "utf8");
    const data = await (await post("data", text, "sample.txt")).json();
    const { job, result, units } = await runToEnd({ program: program.hash, input: { mode: "lines", data: data.hash }, chunks: 3, merge: "reduce", params: { top: 5 } });
    expect(job.state).toBe("completed");
    const counts = new Map<string, number>();
    for (const w of text.toLowerCase().match(/[a-z]+(?:'[a-z]+)?/g)!) counts.set(w, (counts.get(w) ?? 0) + 1);
    const expected = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 5).map(([word, count]) => ({ word, count }));
    expect(result).toEqual(expected);
    expect(units).toHaveLength(3);
    expect(units.map((u) => u.index)).toEqual([0, 1, 2]);
    expect(job.results).toMatchObject({ invalid: 0, errors: 0 });
  });

  it("concatenates the outputs of a range split, in unit order", async () => {
    const program = await (await post("programs", fs.readFileSync(path.join(examples, "js", "collatz.js")), "collatz.js")).json();
    const { job, result } = await runToEnd({ program: program.hash, input: { mode: "range", start: 1, end: 3000 }, chunks: 4, merge: "concat" });
    expect(job.state).toBe("completed");
    expect(result).toHaveLength(4);
    const best = (result as Array<{ start: number; steps: number }>).reduce((a, b) => (b.steps > a.steps ? b : a));
    expect(best).toEqual({ start: 2919, steps: 216 });
  });

  it("runs a WASM program over byte blocks and merges with its WASM reduce", async () => {
    const program = await (await post("programs", fs.readFileSync(path.join(examples, "wasm", "bytesum.wasm")), "bytesum.wasm")).json();
    expect(program).toMatchObject({ kind: "wasm", hasReduce: true });
    const bytes = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7) % 256));
    const data = await (await post("data", bytes, "bytes.bin")).json();
    const { job, result, units } = await runToEnd({ program: program.hash, input: { mode: "blocks", data: data.hash, blockBytes: 4096 }, merge: "reduce" });
    expect(job.state).toBe("completed");
    expect(units).toHaveLength(3);
    const out = Buffer.from((result as { b64: string }).b64, "base64");
    expect(out.readBigUInt64LE(0)).toBe(BigInt(bytes.reduce((s, b) => s + b, 0)));
    expect(out.readBigUInt64LE(8)).toBe(10_000n);
    expect((await auditLedger(srv.deps.db)).ok).toBe(true);
  });

  it("refuses bad programs and oversized uploads with clear errors, storing nothing", async () => {
    const programsBefore = await srv.deps.db.program.count();
    const syntax = await post("programs", "export function run( {", "bad.js");
    expect(syntax.status).toBe(400);
    expect((await syntax.json()).error).toMatch(/Invalid program: .*(line|:1)/i);
    const imports = await post("programs", 'import fs from "node:fs";\nexport function run() { return 1 }', "imp.js");
    expect(imports.status).toBe(400);
    expect((await imports.json()).error).toMatch(/import/i);
    const norun = await post("programs", "export const x = 1;", "norun.js");
    expect((await norun.json()).error).toMatch(/run/);
    const big = await post("programs", Buffer.alloc(70_000, 32), "big.js");
    expect(big.status).toBe(413);
    expect((await big.json()).error).toMatch(/larger than the limit of 64 KiB/);
    const bigData = await post("data", Buffer.alloc(1_100_000, 1), "big.bin");
    expect(bigData.status).toBe(413);
    expect(await srv.deps.db.program.count()).toBe(programsBefore);
    expect(await srv.deps.db.dataFile.count({ where: { size: { gt: 1_048_576 } } })).toBe(0);
    const anon = await fetch(`${srv.url}/api/programs?name=x.js`, { method: "POST", body: "export function run(){}" });
    expect(anon.status).toBe(401);

    // Submissions that name missing programs or data, or ask reduce of a program without one.
    const api = trpc(srv.url, user.apiKey);
    expect(await trpcError(api.jobs.submit.mutate({ kernel: "program", program: "0".repeat(64), input: { mode: "json", items: [1] } }))).toMatchObject({ code: "NOT_FOUND" });
    const collatz = await (await post("programs", fs.readFileSync(path.join(examples, "js", "collatz.js")), "collatz.js")).json();
    expect(await trpcError(api.jobs.submit.mutate({ kernel: "program", program: collatz.hash, input: { mode: "lines", data: "f".repeat(64) }, chunks: 2 }))).toMatchObject({ code: "NOT_FOUND" });
    const noReduce = await (await post("programs", "export function run(x) { return x }", "id.js")).json();
    expect(await trpcError(api.jobs.submit.mutate({ kernel: "program", program: noReduce.hash, input: { mode: "json", items: [1] }, merge: "reduce" }))).toMatchObject({
      code: "BAD_REQUEST", message: expect.stringMatching(/no reduce/),
    });
  });

  it("submits a program from the CLI and writes the merged output", async () => {
    const out = path.join(srv.dir, "result.json");
    const r = await runCli([
      "submit", "--program", path.join(examples, "js", "wordcount.js"), "--lines", path.join(examples, "js", "sample.txt"),
      "--chunks", "2", "--merge", "reduce", "--params", '{"top":3}', "--wait", "--json", "--output", out, "--url", srv.url, "--api-key", user.apiKey,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.status).toBe("completed");
    expect(json.result).toEqual([{ word: "the", count: 11 }, { word: "it", count: 10 }, { word: "of", count: 10 }]);
    expect(JSON.parse(fs.readFileSync(out, "utf8"))).toEqual(json.result);
  });
});
