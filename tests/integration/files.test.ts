import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUserWithKey, runCli, startTestServer, type TestServer } from "../helpers/server";
import { trpc, trpcError } from "../helpers/clients";
import { isMissingBlob } from "../../server/store/blobs";
import { createProgram } from "../../server/services/programs/programs";
import { collectJobInputs, COMPLETED_INPUTS_KEPT_MS } from "../../server/services/programs/files";

// An account's stored files: a storage quota on uploads (a free account could otherwise fill
// the disk with 64 MiB uploads in a loop), listing them, and deleting them, with the bytes
// removed only once nothing else (another account, a program, a running job) refers to them.
describe("files and the storage quota", () => {
  let srv: TestServer;
  const QUOTA = 4096;

  const post = (kind: "programs" | "data", body: BodyInit, key: string, init: RequestInit = {}) =>
    fetch(`${srv.url}/api/${kind}?name=f.bin`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body, ...init });
  const randomBytes = (n: number) => new Uint8Array(crypto.randomBytes(n));
  const sha = (b: Uint8Array | string) => crypto.createHash("sha256").update(b).digest("hex");
  const stored = (hash: string) => srv.deps.blobs.get(hash).then(() => true, (e) => (isMissingBlob(e) ? false : Promise.reject(e)));

  beforeAll(async () => {
    srv = await startTestServer({ ACCOUNT_STORAGE_BYTES: String(QUOTA) });
  });
  afterAll(async () => {
    await srv?.close();
  });

  it("refuses an upload past the quota with 413 and stores nothing, by declared length or by the bytes that came", async () => {
    const user = await createUserWithKey(srv.deps, "quota@example.com");
    const first = randomBytes(3000);
    expect((await post("data", first, user.apiKey)).status).toBe(201);
    // The same bytes again take no more room.
    expect((await post("data", first, user.apiKey)).status).toBe(201);

    const second = randomBytes(2000);
    const declared = await post("data", second, user.apiKey);
    expect(declared.status).toBe(413);
    expect((await declared.json()).error).toMatch(/Your programs and data files take 3 KiB of your 4 KiB; this upload of 2 KiB does not fit/);
    // Streamed without a length, it is refused once it has come, and its bytes are removed.
    const chunked = await post("data", new Blob([second]).stream(), user.apiKey, { duplex: "half" } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(await stored(sha(second))).toBe(false);
    // Programs count too.
    const program = `export function run(x) { return x; }\n// ${"p".repeat(1500)}`;
    expect((await post("programs", program, user.apiKey)).status).toBe(413);
    expect(await srv.deps.db.program.count({ where: { hash: sha(program) } })).toBe(0);

    const listing = await trpc(srv.url, user.apiKey).files.list.query();
    expect(listing).toMatchObject({ usedBytes: 3000, quotaBytes: QUOTA, files: [{ type: "data", hash: sha(first), size: 3000 }] });
    // Room made by deleting is room to upload again.
    await trpc(srv.url, user.apiKey).files.deleteData.mutate({ hash: sha(first) });
    expect(await stored(sha(first))).toBe(false);
    expect((await post("data", second, user.apiKey)).status).toBe(201);
  });

  it("keeps bytes another account uploaded too, or that a running job reads, and removes them after the last", async () => {
    const a = await createUserWithKey(srv.deps, "a@example.com");
    const b = await createUserWithKey(srv.deps, "b@example.com");
    const bytes = randomBytes(1024);
    const hash = sha(bytes);
    expect((await post("data", bytes, a.apiKey)).status).toBe(201);
    expect((await post("data", bytes, b.apiKey)).status).toBe(201);

    // Someone else's file, a malformed hash, and one's own twice.
    expect(await trpcError(trpc(srv.url, await createUserWithKey(srv.deps, "c@example.com").then((c) => c.apiKey)).files.deleteData.mutate({ hash })))
      .toMatchObject({ code: "NOT_FOUND" });
    expect(await trpcError(trpc(srv.url, a.apiKey).files.deleteData.mutate({ hash: "../../etc/passwd" }))).toMatchObject({ code: "BAD_REQUEST" });

    expect(await trpc(srv.url, a.apiKey).files.deleteData.mutate({ hash })).toEqual({ hash, bytesFreed: 0 });
    expect(await trpcError(trpc(srv.url, a.apiKey).files.deleteData.mutate({ hash }))).toMatchObject({ code: "NOT_FOUND" });
    expect(await stored(hash)).toBe(true);
    // b's job splits it into one block: the unit's input is the same blob. No volunteer is
    // connected, so the job stays running while b deletes the file.
    const program = await (await post("programs", "export function run(x) { return x.length; }", b.apiKey)).json();
    const job = await trpc(srv.url, b.apiKey).jobs.submit.mutate({
      kernel: "program", program: program.hash, input: { mode: "blocks", data: hash, blockBytes: 4096 }, merge: "concat",
    } as never);
    expect(await trpc(srv.url, b.apiKey).files.deleteData.mutate({ hash })).toEqual({ hash, bytesFreed: 0 });
    expect(await stored(hash)).toBe(true);

    // The program ran a job: it stays. Another, unused, goes with its compiled script and source map.
    expect(await trpcError(trpc(srv.url, b.apiKey).files.deleteProgram.mutate({ hash: program.hash }))).toMatchObject({ code: "CONFLICT" });
    await trpc(srv.url, b.apiKey).jobs.cancel.mutate({ id: job.id });
    const unused = await (await post("programs", "export function run(x) { return x * 2; }", b.apiKey)).json();
    const row = await srv.deps.db.program.findUniqueOrThrow({ where: { hash: unused.hash } });
    const freed = await trpc(srv.url, b.apiKey).files.deleteProgram.mutate({ hash: unused.hash });
    expect(freed.bytesFreed).toBeGreaterThan(0);
    for (const h of [unused.hash, row.scriptHash!, row.sourceMapHash!]) expect(await stored(h)).toBe(false);
    expect(await trpc(srv.url, b.apiKey).files.list.query()).toMatchObject({ files: [{ type: "program", hash: program.hash }] });
  });

  it("keeps a program for every account that uploaded it, and counts its compiled script and source map", async () => {
    const first = await createUserWithKey(srv.deps, "first@example.com");
    const second = await createUserWithKey(srv.deps, "second@example.com");
    const source = `export function run(x) { return x + 1; } // ${crypto.randomUUID()}`;
    const program = await (await post("programs", source, first.apiKey)).json();
    const listed = await trpc(srv.url, first.apiKey).files.list.query();
    // The upload, its compiled script and its source map.
    expect(listed.usedBytes).toBeGreaterThan(source.length * 2);
    expect(listed.files).toMatchObject([{ type: "program", kind: "js", hash: program.hash, size: listed.usedBytes }]);
    // The same bytes from another account: its own upload, on its own list and quota.
    expect((await (await post("programs", source, second.apiKey)).json()).hash).toBe(program.hash);
    expect(await trpc(srv.url, second.apiKey).files.list.query()).toMatchObject({ usedBytes: listed.usedBytes, files: [{ hash: program.hash }] });
    // The first uploader deleting theirs takes nothing from the second.
    expect(await trpc(srv.url, first.apiKey).files.deleteProgram.mutate({ hash: program.hash })).toEqual({ hash: program.hash, bytesFreed: 0 });
    expect(await trpc(srv.url, first.apiKey).files.list.query()).toMatchObject({ usedBytes: 0, files: [] });
    expect(await stored(program.hash)).toBe(true);
    await expect(trpc(srv.url, second.apiKey).jobs.submit.mutate({
      kernel: "program", program: program.hash, input: { mode: "range", start: 0, end: 4 }, chunks: 2, replication: { replicas: 1 },
    } as never)).resolves.toMatchObject({ id: expect.any(String) });
  });

  it("refuses a program whose compiled script and source map would pass the quota, storing none of it", async () => {
    const user = await createUserWithKey(srv.deps, "compiled@example.com");
    // Under the quota as uploaded; over it with what compiling makes of it.
    const source = `export function run(x) {\n${Array.from({ length: 85 }, (_, i) => `  const v${i} = x + ${i};`).join("\n")}\n  return v0;\n}\n`;
    expect(source.length).toBeLessThan(QUOTA / 2);
    const res = await post("programs", source, user.apiKey);
    expect(res.status).toBe(413);
    expect((await res.json()).error).toMatch(/Your programs and data files take 0 bytes of your 4 KiB; this upload of \d+(\.\d)? KiB does not fit/);
    expect(await stored(sha(source))).toBe(false);
    expect(await srv.deps.db.program.count({ where: { hash: sha(source) } })).toBe(0);
    expect(await trpc(srv.url, user.apiKey).files.list.query()).toMatchObject({ usedBytes: 0, files: [] });
  });

  it("lists and deletes from the CLI, by a hash's first digits", async () => {
    const user = await createUserWithKey(srv.deps, "cli-files@example.com");
    const env = { TABGRID_URL: srv.url, TABGRID_API_KEY: user.apiKey };
    const bytes = randomBytes(1500);
    const hash = sha(bytes);
    expect((await post("data", bytes, user.apiKey)).status).toBe(201);

    const ls = await runCli(["files"], env);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toContain(hash.slice(0, 16));
    expect(ls.stdout).toMatch(/1\.5 KiB used of 4\.0 KiB/);

    const bad = await runCli(["files", "rm", "zz"], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/is not a file's hash/);
    const missing = await runCli(["files", "rm", "0".repeat(12)], env);
    expect(missing.stderr).toMatch(/you have no file/);

    const rm = await runCli(["files", "rm", hash.slice(0, 10), "--json"], env);
    expect(rm.code).toBe(0);
    expect(JSON.parse(rm.stdout)).toMatchObject({ deleted: [{ hash, type: "data", bytesFreed: 1500 }], usedBytes: 0, quotaBytes: QUOTA });
    expect(await stored(hash)).toBe(false);
  });
});

describe("inputs stored for a submission", () => {
  it("are not stored for one the owner cannot pay for, nor kept for one refused later", async () => {
    const srv = await startTestServer();
    try {
      const user = await createUserWithKey(srv.deps, "chunks@example.com");
      const api = trpc(srv.url, user.apiKey);
      const post = (kind: string, body: string) =>
        fetch(`${srv.url}/api/${kind}?name=x`, { method: "POST", headers: { authorization: `Bearer ${user.apiKey}` }, body }).then((r) => r.json() as Promise<{ hash: string }>);
      const blobFiles = () => (fs.existsSync(path.join(srv.dir, "blobs")) ? fs.readdirSync(path.join(srv.dir, "blobs"), { recursive: true }).filter((f) => /[0-9a-f]{64}$/.test(String(f))).length : 0);
      const program = await post("programs", "export function run(x) { return 1; }\nexport function step(m, s, ctx) { if (ctx.round === 0) throw new Error('no first round'); return { next: 1 }; }");
      const data = await post("data", Array.from({ length: 4000 }, (_, i) => `line ${i} ${"x".repeat(20)}`).join("\n"));
      const before = blobFiles();
      // Too expensive: refused before the file is cut (it stored 6 MB of chunks a try).
      const costly = await trpcError(api.jobs.submit.mutate({
        kernel: "program", program: program.hash, input: { mode: "lines", data: data.hash }, chunks: 8, cpuSecondsPerUnit: 3600, replication: { replicas: 1 },
      } as never));
      expect(costly).toMatchObject({ code: "PAYMENT_REQUIRED", message: expect.stringMatching(/^Not enough credits: this needs/) });
      const items = Array.from({ length: 4 }, (_, i) => "y".repeat(20_000) + i);
      expect(await trpcError(api.jobs.submit.mutate({
        kernel: "program", program: program.hash, input: { mode: "json", items }, cpuSecondsPerUnit: 3600, replication: { replicas: 1 },
      } as never))).toMatchObject({ code: "PAYMENT_REQUIRED" });
      expect(blobFiles()).toBe(before);
      // Refused after the cut (its first step fails): the chunks it stored are removed again.
      const failed = await trpcError(api.jobs.submit.mutate({
        kernel: "program", program: program.hash, input: { mode: "json", items }, rounds: 3, cpuSecondsPerUnit: 0.001, replication: { replicas: 1 },
      } as never));
      expect(failed.message).toMatch(/The program's step failed before the first round: Error: no first round/);
      expect(blobFiles()).toBe(before);
    } finally {
      await srv.close();
    }
  });
});

describe("inputs stored for a running job", () => {
  it("count against the owner's input budget until the job ends, and are removed then unless something else reads them", async () => {
    const srv = await startTestServer({ ACCOUNT_STORAGE_BYTES: String(100 * 1024) });
    try {
      const user = await createUserWithKey(srv.deps, "inputs@example.com");
      const api = trpc(srv.url, user.apiKey);
      const post = (kind: string, body: string) =>
        fetch(`${srv.url}/api/${kind}?name=x`, { method: "POST", headers: { authorization: `Bearer ${user.apiKey}` }, body }).then((r) => r.json() as Promise<{ hash: string }>);
      const stored = (hash: string) => srv.deps.blobs.get(hash).then(() => true, (e) => (isMissingBlob(e) ? false : Promise.reject(e)));
      const chunksOf = async (id: string) => (await srv.deps.db.workUnit.findMany({ where: { jobId: id }, select: { input: true } })).map((u) => (JSON.parse(u.input) as { blob: string }).blob);
      const program = await post("programs", "export function run(x) { return x.length; }");
      const text = Array.from({ length: 1000 }, (_, i) => `line ${i} ${crypto.randomBytes(8).toString("hex")}`).join("\n");
      const data = await post("data", text);
      const size = Buffer.byteLength(text);
      const submit = (chunks: number) => api.jobs.submit.mutate({ kernel: "program", program: program.hash, input: { mode: "lines", data: data.hash }, chunks, replication: { replicas: 1 } } as never);
      // No volunteer: the jobs stay running. Each holds the file again, as its chunks (without the newlines between them).
      const cut = (n: number) => size - (n - 1);
      // And each unit's row: its input names its chunk.
      const held = (n: number) => cut(n) + n * JSON.stringify({ blob: "0".repeat(64), encoding: "text" }).length;
      const a = await submit(3);
      const b = await submit(3);
      const c = await submit(4);
      expect((await api.files.list.query()).inputBytes).toBe(2 * held(3) + held(4));
      const blobsBefore = (await fs.promises.readdir(path.join(srv.dir, "blobs"), { recursive: true })).length;
      // A fourth cut does not fit the budget: refused before the file is cut again.
      const refused = await trpcError(submit(5));
      expect(refused).toMatchObject({ code: "PAYLOAD_TOO_LARGE", message: expect.stringMatching(/^Your jobs' inputs take 7\d KiB of your 100 KiB; this job's 25 KiB of inputs do not fit/) });
      expect((await fs.promises.readdir(path.join(srv.dir, "blobs"), { recursive: true })).length).toBe(blobsBefore);

      // Running jobs' inputs stay.
      expect(await collectJobInputs(srv.deps)).toEqual({ jobs: 0, blobs: 0, bytes: 0 });
      const [aChunks, cChunks] = [await chunksOf(a.id), await chunksOf(c.id)];
      await api.jobs.cancel.mutate({ id: a.id });
      await api.jobs.cancel.mutate({ id: c.id });
      // a's chunks are b's too (the same cut of the same file): they stay; c's go.
      expect(await collectJobInputs(srv.deps)).toEqual({ jobs: 2, blobs: 4, bytes: cut(4) });
      for (const h of aChunks) expect(await stored(h)).toBe(true);
      for (const h of cChunks) expect(await stored(h)).toBe(false);
      expect((await api.files.list.query()).inputBytes).toBe(held(3));
      // Their rows keep no input either.
      expect(await srv.deps.db.workUnit.findMany({ where: { jobId: c.id }, select: { input: true } })).toEqual(Array.from({ length: 4 }, () => ({ input: "null" })));
      await api.jobs.cancel.mutate({ id: b.id });
      expect(await collectJobInputs(srv.deps)).toMatchObject({ jobs: 1, blobs: 3 });
      for (const h of aChunks) expect(await stored(h)).toBe(false);
      expect((await api.files.list.query()).inputBytes).toBe(0);
      // The uploaded file itself stays, even as a job's one chunk (the same bytes, the same blob).
      const whole = await api.jobs.submit.mutate({ kernel: "program", program: program.hash, input: { mode: "blocks", data: data.hash, blockBytes: 1 << 20 }, replication: { replicas: 1 } } as never);
      expect(await chunksOf(whole.id)).toEqual([data.hash]);
      await api.jobs.cancel.mutate({ id: whole.id });
      expect(await collectJobInputs(srv.deps)).toEqual({ jobs: 1, blobs: 0, bytes: 0 });
      expect(await stored(data.hash)).toBe(true);
      expect(await stored(program.hash)).toBe(true);

      // JSON items kept in the units' rows (16 KiB or less each) count as much.
      const items = Array.from({ length: 4 }, (_, i) => `${i}`.repeat(15_000));
      const json = await api.jobs.submit.mutate({ kernel: "program", program: program.hash, input: { mode: "json", items }, replication: { replicas: 1 } } as never);
      const rows = items.reduce((n, v) => n + JSON.stringify({ value: v }).length, 0);
      expect((await api.files.list.query()).inputBytes).toBe(rows);
      // A completed job's inputs stay a day (a cheater caught meanwhile has its units computed again from them).
      await srv.deps.db.job.update({ where: { id: json.id }, data: { state: "completed", finishedAt: new Date() } });
      expect(await collectJobInputs(srv.deps)).toEqual({ jobs: 0, blobs: 0, bytes: 0 });
      expect(await collectJobInputs(srv.deps, Date.now() + COMPLETED_INPUTS_KEPT_MS + 1000)).toEqual({ jobs: 1, blobs: 0, bytes: 0 });
      expect((await api.files.list.query()).inputBytes).toBe(0);
      expect(new Set((await srv.deps.db.workUnit.findMany({ where: { jobId: json.id }, select: { input: true } })).map((u) => u.input))).toEqual(new Set(["null"]));
    } finally {
      await srv.close();
    }
  });
});

describe("the disk's floor", () => {
  it("refuses uploads with 507 while the disk would keep less free than UPLOAD_DISK_FLOOR_BYTES", async () => {
    // A floor no disk here reaches: every upload is refused, and nothing is stored.
    const srv = await startTestServer({ UPLOAD_DISK_FLOOR_BYTES: String(2 ** 52) });
    try {
      const user = await createUserWithKey(srv.deps, "floor@example.com");
      const res = await fetch(`${srv.url}/api/data?name=x.bin`, { method: "POST", headers: { authorization: `Bearer ${user.apiKey}` }, body: "some bytes" });
      expect(res.status).toBe(507);
      expect((await res.json()).error).toMatch(/The server is short of disk space \(.* free\); it stores no more uploads, inputs or rounds until its administrator makes room/);
      expect(await srv.deps.db.dataFile.count()).toBe(0);
      // Nor is a submission's input cut and stored (the program was stored before the floor).
      const program = await createProgram(srv.deps, user.user.id, { name: "p.js", bytes: Buffer.from("export function run(x) { return x; }") });
      const items = Array.from({ length: 2 }, (_, i) => "z".repeat(20_000) + i);
      expect(await trpcError(trpc(srv.url, user.apiKey).jobs.submit.mutate({ kernel: "program", program: program.hash, input: { mode: "json", items } } as never)))
        .toMatchObject({ code: "SERVICE_UNAVAILABLE", message: expect.stringMatching(/short of disk space/) });
    } finally {
      await srv.close();
    }
  });
});

describe("inputs stored by parallel submissions", () => {
  it("never take the account past its input budget, however many come at once", async () => {
    const srv = await startTestServer({ ACCOUNT_STORAGE_BYTES: String(100 * 1024) });
    try {
      const user = await createUserWithKey(srv.deps, "parallel@example.com");
      const api = trpc(srv.url, user.apiKey);
      const program = await fetch(`${srv.url}/api/programs?name=x`, { method: "POST", headers: { authorization: `Bearer ${user.apiKey}` }, body: "export function run(x) { return x.length; }" })
        .then((r) => r.json() as Promise<{ hash: string }>);
      // Each job keeps 30 kB of JSON items in its units' rows: three fit the budget, not four.
      // Each its own client, so each its own request (a client batches calls made together).
      const submit = (i: number) => trpc(srv.url, user.apiKey).jobs.submit.mutate({
        kernel: "program", program: program.hash, input: { mode: "json", items: [`${i}`.repeat(15_000), `${i}`.repeat(15_000)] }, replication: { replicas: 1 },
      } as never);
      const outcomes = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => submit(i % 10)));
      const taken = outcomes.filter((o) => o.status === "fulfilled").length;
      for (const o of outcomes) if (o.status === "rejected") expect(String(o.reason)).toMatch(/do not fit|Too many|TOO_MANY|submissions/i);
      expect(taken).toBeLessThanOrEqual(3);
      expect((await api.files.list.query()).inputBytes).toBeLessThanOrEqual(100 * 1024);
    } finally {
      await srv.close();
    }
  });
});
