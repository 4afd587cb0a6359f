import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createUserWithKey, repoRoot, startCliVolunteer, startTestServer, waitFor, type CliVolunteer, type TestServer,
} from "../helpers/server";
import { trpc } from "../helpers/clients";
import { parseEnv } from "../../server/env";
import { startServer } from "../../server/app";
import { S3RVER_CREDENTIALS, startS3, type TestS3 } from "../helpers/s3";

const BUCKET = "tabgrid-it";
const sha256 = (d: string | Uint8Array) => crypto.createHash("sha256").update(d).digest("hex");

// BLOB_STORE=s3://… end to end: uploads, input chunks, the program a volunteer fetches, the
// merge's read of the program and a large merged result all go through a real S3-protocol
// server (s3rver), and nothing lands in DATA_DIR/blobs.
describe("blobs in an S3-compatible store", () => {
  let s3: TestS3;
  let srv: TestServer;
  let user: Awaited<ReturnType<typeof createUserWithKey>>;
  let volunteer: CliVolunteer | undefined;
  const s3Env = () => ({
    BLOB_STORE: `s3://${BUCKET}/cluster-a`,
    S3_ENDPOINT: s3.endpoint,
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
  });
  const post = (kind: "programs" | "data", body: Buffer | string, name: string) =>
    fetch(`${srv.url}/api/${kind}?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${user.apiKey}` }, body: typeof body === "string" ? body : new Uint8Array(body) });

  beforeAll(async () => {
    s3 = await startS3([BUCKET]);
    srv = await startTestServer(s3Env());
    user = await createUserWithKey(srv.deps, "s3@example.com");
    volunteer = startCliVolunteer(srv.url, 1, { dir: srv.dir });
    await waitFor(() => srv.deps.coordinator.volunteers().length === 1, 30_000, "the volunteer");
  });
  afterAll(async () => {
    await volunteer?.stop();
    await srv?.close();
    await s3?.close();
  });

  async function runToEnd(input: Record<string, unknown>) {
    const api = trpc(srv.url, user.apiKey);
    const { id } = await api.jobs.submit.mutate({ kernel: "program", replication: { replicas: 1 }, ...input } as never);
    await waitFor(async () => ["completed", "failed"].includes((await api.jobs.get.query({ id })).state), 60_000, `program job ${id}`);
    return { id, job: await api.jobs.get.query({ id }), result: await api.jobs.result.query({ id }) };
  }

  it("reports the store in /api/health", async () => {
    const health = await (await fetch(`${srv.url}/api/health`)).json();
    expect(health).toMatchObject({ status: "ok", blobs: "ok", blobStore: "s3" });
    expect(srv.logs.join("\n")).toMatch(new RegExp(`blobs in s3://${BUCKET}/cluster-a/ at ${s3.endpoint}`));
  });

  it("runs an uploaded program over an uploaded file and serves its blobs, all from the bucket", async () => {
    const source = fs.readFileSync(path.join(repoRoot, "examples", "js", "wordcount.js"));
    const program = await (await post("programs", source, "wordcount.js")).json();
    expect(program.hash).toBe(sha256(source));
    const text = fs.readFileSync(path.join(repoRoot, "examples", "js", "sample.txt"), "utf8");
    const data = await (await post("data", text, "sample.txt")).json();

    const { job, result } = await runToEnd({ program: program.hash, input: { mode: "lines", data: data.hash }, chunks: 2, merge: "reduce", params: { top: 3 } });
    expect(job.state).toBe("completed");
    expect((result as Array<{ word: string; count: number }>).length).toBe(3);

    // The bytes behind the hash (the job has ended: to their owner only), and a 404 for a hash never stored.
    const served = await fetch(`${srv.url}/api/blobs/${program.hash}`, { headers: { authorization: `Bearer ${user.apiKey}` } });
    expect(served.status).toBe(200);
    expect(Buffer.from(await served.arrayBuffer()).equals(source)).toBe(true);
    expect((await fetch(`${srv.url}/api/blobs/${sha256("never stored")}`)).status).toBe(404);

    const keys = await s3.keys(BUCKET);
    expect(keys).toContain(`cluster-a/${program.hash.slice(0, 2)}/${program.hash}`);
    expect(keys).toContain(`cluster-a/${data.hash.slice(0, 2)}/${data.hash}`);
    for (const k of keys) expect(k).toMatch(/^cluster-a\/([0-9a-f]{2})\/\1[0-9a-f]{62}$/);
    // The volunteer read the compiled script and both input chunks through /api/blobs.
    expect(s3.requests.filter((r) => r.startsWith("GET /tabgrid-it/cluster-a/")).length).toBeGreaterThanOrEqual(3);
    expect(fs.existsSync(path.join(srv.dir, "blobs"))).toBe(false);
  });

  it("keeps a large merged result in the bucket and reads it back", async () => {
    const program = await (await post("programs", "export function run(n) { return 'x'.repeat(n) }", "big.js")).json();
    const { id, job, result } = await runToEnd({ program: program.hash, input: { mode: "json", items: [40_000, 40_000] }, merge: "concat" });
    expect(job.state).toBe("completed");
    expect(result).toEqual(["x".repeat(40_000), "x".repeat(40_000)]);
    const row = await srv.deps.db.job.findUnique({ where: { id }, select: { result: true, resultBlob: true } });
    expect(row?.result).toBeNull();
    expect(await s3.keys(BUCKET, `cluster-a/${row!.resultBlob!.slice(0, 2)}/`)).toContain(`cluster-a/${row!.resultBlob!.slice(0, 2)}/${row!.resultBlob}`);
    expect(fs.existsSync(path.join(srv.dir, "blobs"))).toBe(false);
  });

  it("refuses to start when the bucket does not answer, and says why", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-s3-refused-"));
    try {
      const env = parseEnv({ ...s3Env(), BLOB_STORE: "s3://no-such-bucket", DATA_DIR: dir, DATABASE_URL: `file:${path.join(dir, "t.db")}`, PORT: "0", HOST: "127.0.0.1", TABGRID_UI: "off", NEXTAUTH_SECRET: "x".repeat(32) });
      await expect(startServer(env, { ui: false, log: () => {} })).rejects.toThrow(
        /The blob store \(s3:\/\/no-such-bucket\/ at http:\/\/127\.0\.0\.1:\d+\) does not answer: HeadBucket failed: .*404.*does the bucket exist/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
