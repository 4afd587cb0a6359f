import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBlobStore, DirectoryBlobStore, isMissingBlob, type BlobStore } from "../../server/store/blobs";
import { S3BlobStore } from "../../server/store/s3Blobs";
import { parseEnv } from "../../server/env";
import { health } from "../../server/http/health";
import { startCluster } from "../../server/cluster/cluster";
import type { Db } from "../../server/store/prisma";
import { closedPort, S3RVER_CREDENTIALS, startS3, type TestS3 } from "../helpers/s3";

const BUCKET = "tabgrid-blobs";
const sha256 = (d: string | Uint8Array) => crypto.createHash("sha256").update(d).digest("hex");
const errorOf = (p: Promise<unknown>) => p.then(() => { throw new Error("expected a rejection"); }, (e: Error & { code?: string }) => e);

// The S3 store against a real S3-protocol server (s3rver), side by side with the directory store.
describe("S3 blob store", () => {
  let s3: TestS3;
  let store: S3BlobStore;
  let dirStore: DirectoryBlobStore;
  let tmp: string;
  const make = (opts: Partial<ConstructorParameters<typeof S3BlobStore>[0]> = {}) =>
    new S3BlobStore({ bucket: BUCKET, prefix: "tg/", endpoint: s3.endpoint, region: "us-east-1", forcePathStyle: true, credentials: S3RVER_CREDENTIALS, ...opts });
  const stores: BlobStore[] = [];
  const track = <T extends BlobStore>(s: T) => (stores.push(s), s);

  beforeAll(async () => {
    s3 = await startS3([BUCKET]);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-blobs-"));
    store = track(make());
    dirStore = new DirectoryBlobStore(path.join(tmp, "blobs"));
  });
  afterAll(async () => {
    for (const s of stores) await s.close();
    await s3?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("stores text and bytes under the same hash as the directory store, at <prefix><hash[0..2]>/<hash>", async () => {
    const text = "héllo, blobs\n";
    const bytes = new Uint8Array(crypto.randomBytes(3000));
    // A view into a larger buffer, as split.ts stores byte blocks: only the view's bytes count.
    const big = crypto.randomBytes(10_000);
    const view = big.subarray(1000, 5000);
    for (const data of [text, bytes, view]) {
      const hash = await store.put(data);
      expect(hash).toBe(sha256(data));
      expect(hash).toBe(await dirStore.put(data));
      const back = await store.get(hash);
      expect(Buffer.isBuffer(back)).toBe(true);
      expect(back.equals(Buffer.from(typeof data === "string" ? Buffer.from(data, "utf8") : data))).toBe(true);
      // The same bytes as a stream, with their count (downloads stream them).
      for (const s of [store, dirStore]) {
        const { stream, bytes } = await s.open(hash);
        const chunks: Buffer[] = [];
        for await (const c of stream) chunks.push(c as Buffer);
        expect(Buffer.concat(chunks).equals(back)).toBe(true);
        expect(bytes).toBe(back.length);
      }
    }
    expect((await store.get(sha256(text))).toString("utf8")).toBe(text);
    // Parts are stored end to end, under the hash of the whole.
    const parts = [Buffer.from("[1,"), Buffer.from("2]")];
    for (const s of [store, dirStore]) {
      expect(await s.put(parts)).toBe(sha256("[1,2]"));
      expect((await s.get(sha256("[1,2]"))).toString()).toBe("[1,2]");
    }
    expect(await s3.keys(BUCKET)).toEqual([text, bytes, view, "[1,2]"].map((d) => `tg/${sha256(d).slice(0, 2)}/${sha256(d)}`).sort());
  });

  it("puts idempotently: the same bytes twice are one object, and a large blob already there is not uploaded again", async () => {
    const small = "same bytes";
    expect(await store.put(small)).toBe(await store.put(small));
    expect((await s3.keys(BUCKET, "tg/")).filter((k) => k.endsWith(sha256(small)))).toHaveLength(1);

    const large = crypto.randomBytes(200_000);
    const before = s3.requests.length;
    const hash = await store.put(large);
    const again = await store.put(large);
    expect(again).toBe(hash);
    const seen = s3.requests.slice(before).map((r) => r.split(" ")[0]);
    expect(seen).toEqual(["HEAD", "PUT", "HEAD"]);
    expect((await store.get(hash)).equals(large)).toBe(true);
  });

  it("deletes a blob and answers the bytes freed: 0 for one not there; a bad hash is refused", async () => {
    const bytes = crypto.randomBytes(1234);
    for (const s of [store, dirStore]) {
      const hash = await s.put(bytes);
      expect(await s.delete(hash)).toBe(1234);
      expect((await errorOf(s.get(hash))).code).toBe("ENOENT");
      expect(await s.delete(hash)).toBe(0);
      await expect(s.delete("../../etc/passwd")).rejects.toThrow(/not a sha256 hash/);
    }
    expect((await s3.keys(BUCKET)).filter((k) => k.endsWith(sha256(bytes)))).toEqual([]);
  });

  it("answers a missing hash with the directory store's ENOENT, and refuses what is not a sha256", async () => {
    const absent = sha256("never stored");
    for (const s of [store, dirStore]) {
      for (const e of [await errorOf(s.get(absent)), await errorOf(s.open(absent))]) {
        expect(e.code).toBe("ENOENT");
        expect(isMissingBlob(e)).toBe(true);
      }
    }
    const before = s3.requests.length;
    for (const bad of ["../../etc/passwd", absent.toUpperCase(), absent.slice(1), `${absent}/x`, ""]) {
      for (const s of [store, dirStore]) expect((await errorOf(s.get(bad))).message).toMatch(/not a sha256 hash/);
    }
    expect(s3.requests.length).toBe(before); // refused before any request
  });

  it("keeps the store's own trouble an error, not a missing blob: no bucket, an unknown key id, an unreachable server", async () => {
    const hash = sha256("x");
    const noBucket = track(make({ bucket: "no-such-bucket" }));
    const e1 = await errorOf(noBucket.get(hash));
    expect(isMissingBlob(e1)).toBe(false);
    expect(e1.message).toMatch(/S3 blob store s3:\/\/no-such-bucket\/tg\/ .*GetObject .* failed: NoSuchBucket.*HTTP 404.*does the bucket exist/);
    expect((await errorOf(noBucket.put("x"))).message).toMatch(/PutObject .*NoSuchBucket/);
    expect(await noBucket.check()).toMatch(/HeadBucket failed: .*404.*does the bucket exist/);

    const stranger = track(make({ credentials: { accessKeyId: "NOBODY", secretAccessKey: "very-secret-value" } }));
    const e2 = await errorOf(stranger.get(hash));
    expect(isMissingBlob(e2)).toBe(false);
    expect(e2.message).toMatch(/InvalidAccessKeyId.*HTTP 403.*check AWS_ACCESS_KEY_ID/);
    expect(e2.message).not.toContain("very-secret-value");

    const port = await closedPort();
    const away = track(make({ endpoint: `http://127.0.0.1:${port}` }));
    const t0 = Date.now();
    const e3 = await errorOf(away.put("anything"));
    expect(e3.message).toMatch(new RegExp(`PutObject tg/.* failed: .*ECONNREFUSED 127\\.0\\.0\\.1:${port}.*is S3_ENDPOINT right and the server up\\?`));
    const e4 = await errorOf(away.get(hash));
    expect(isMissingBlob(e4)).toBe(false);
    expect(e4.message).toMatch(/ECONNREFUSED/);
    expect(await away.check()).toMatch(/ECONNREFUSED/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it("checks the bucket with one HEAD per few seconds however often health asks, and health reports it", async () => {
    const fresh = track(make());
    const before = s3.requests.length;
    expect(await Promise.all([fresh.check(), fresh.check()])).toEqual(["ok", "ok"]);
    expect(await fresh.check()).toBe("ok");
    expect(s3.requests.slice(before)).toEqual([`HEAD /${BUCKET}/`]);

    const db = { $queryRawUnsafe: async () => [{ 1: 1 }] } as unknown as Db;
    const answer = async (blobs: BlobStore) => {
      let status = 0;
      let body = "";
      const res = { writeHead: (s: number) => void (status = s), end: (b: string) => void (body = b) } as unknown as Parameters<typeof health>[3];
      const logs: string[] = [];
      await health(db, startCluster({ log: () => {} }), blobs, res, (m) => logs.push(m));
      return { status, body: JSON.parse(body), logs };
    };
    expect(await answer(fresh)).toMatchObject({ status: 200, body: { status: "ok", blobs: "ok", blobStore: "s3" } });
    expect(await answer(dirStore)).toMatchObject({ status: 200, body: { status: "ok", blobs: "ok", blobStore: "directory" } });
    const away = track(make({ endpoint: `http://127.0.0.1:${await closedPort()}` }));
    const down = await answer(away);
    // Built-in kernels go on without blobs: degraded, not down; the reason goes to the log only.
    expect(down).toMatchObject({ status: 200, body: { status: "degraded", blobs: "error", blobStore: "s3" } });
    expect(JSON.stringify(down.body)).not.toMatch(/ECONNREFUSED/);
    expect(down.logs.join("\n")).toMatch(/blob store did not answer: .*ECONNREFUSED/);
  });
});

describe("blob store configuration", () => {
  let dir: string;
  beforeAll(() => void (dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-blobenv-"))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const env = (vars: Record<string, string>) => parseEnv({ DATA_DIR: dir, NEXTAUTH_SECRET: "x".repeat(32), ...vars });
  const refusal = (vars: Record<string, string>) => {
    try {
      env(vars);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error("expected the environment to be refused");
  };

  it("defaults to DATA_DIR/blobs and takes s3://bucket/prefix with the S3 settings", async () => {
    const directory = await createBlobStore(env({}));
    expect(directory.kind).toBe("directory");
    expect(directory.describe()).toBe(`directory ${path.join(dir, "blobs")}`);
    expect((await createBlobStore(env({ BLOB_STORE: "directory" }))).kind).toBe("directory");

    const parsed = env({ BLOB_STORE: "s3://my-bucket/tabgrid/blobs/", S3_ENDPOINT: "http://127.0.0.1:9000", AWS_ACCESS_KEY_ID: "AK", AWS_SECRET_ACCESS_KEY: "hidden-secret" });
    expect(parsed.S3_REGION).toBe("us-east-1");
    expect(parsed.S3_FORCE_PATH_STYLE).toBeUndefined(); // with an endpoint, path-style by default
    const s3 = await createBlobStore(parsed);
    expect(s3.kind).toBe("s3");
    expect(s3.describe()).toBe("s3://my-bucket/tabgrid/blobs/ at http://127.0.0.1:9000");
    expect(s3.describe()).not.toContain("hidden-secret");
    await s3.close();
    expect(env({ BLOB_STORE: "s3://b.example", S3_REGION: "eu-west-3", S3_FORCE_PATH_STYLE: "false" })).toMatchObject({ S3_REGION: "eu-west-3", S3_FORCE_PATH_STYLE: false });
  });

  it("refuses a bad configuration with a clear message that repeats no secret", () => {
    expect(refusal({ BLOB_STORE: "s3:/bucket" })).toMatch(/BLOB_STORE: must be "directory" .* or s3:\/\/bucket\/optional\/prefix/);
    expect(refusal({ BLOB_STORE: "/mnt/blobs" })).toMatch(/BLOB_STORE: must be/);
    expect(refusal({ BLOB_STORE: "s3://Bad_Bucket" })).toMatch(/BLOB_STORE: the bucket name must be 3 to 63 lowercase/);
    expect(refusal({ BLOB_STORE: "s3://bucket/a//b" })).toMatch(/BLOB_STORE: the prefix/);
    expect(refusal({ BLOB_STORE: "s3://bucket/../x" })).toMatch(/BLOB_STORE: the prefix/);
    const pasted = refusal({ BLOB_STORE: "s3://AKIAEXAMPLE:pasted-secret@bucket" });
    expect(pasted).toMatch(/BLOB_STORE: names only the bucket and a prefix: put the server in S3_ENDPOINT/);
    expect(pasted).not.toContain("pasted-secret");
    expect(refusal({ BLOB_STORE: "s3://bucket", S3_ENDPOINT: "minio:9000" })).toMatch(/S3_ENDPOINT: must be an http:\/\/ or https:\/\/ URL/);
    expect(refusal({ BLOB_STORE: "s3://bucket", S3_ENDPOINT: "http://user:pw-secret@minio:9000" })).not.toContain("pw-secret");
    expect(refusal({ BLOB_STORE: "s3://bucket", S3_FORCE_PATH_STYLE: "yes" })).toMatch(/S3_FORCE_PATH_STYLE: must be true or false/);
    expect(refusal({ BLOB_STORE: "s3://bucket", S3_REGION: "Not A Region" })).toMatch(/S3_REGION: must be a region name/);
    // Half a key pair would make the SDK skip it silently and look elsewhere for credentials.
    const half = refusal({ BLOB_STORE: "s3://bucket", AWS_SECRET_ACCESS_KEY: "lonely-secret" });
    expect(half).toMatch(/AWS_ACCESS_KEY_ID: the S3 blob store needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither/);
    expect(half).not.toContain("lonely-secret");
    // S3 settings without an s3:// BLOB_STORE: blobs would quietly stay on local disk.
    expect(refusal({ S3_ENDPOINT: "http://127.0.0.1:9000" })).toMatch(/S3_ENDPOINT: set, but BLOB_STORE is not an s3:\/\/ URL/);
  });
});
