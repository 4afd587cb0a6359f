import crypto from "node:crypto";
import fs from "node:fs/promises";
import { Readable } from "node:stream";
import path from "node:path";
import type { Env } from "../env";
import { parseBlobStore } from "./blobConfig";

/**
 * Content-addressed bytes (programs, inputs, large results) kept out of database rows: a
 * directory (the default; shared storage in a cluster) or an S3-compatible bucket.
 */
export interface BlobStore {
  readonly kind: "directory" | "s3";
  /** Stores the bytes (UTF-8 for a string; parts end to end) and answers their sha256 in hex. Idempotent. */
  put(data: BlobData): Promise<string>;
  /** The bytes stored under a hash; rejects with a `code: "ENOENT"` error (see isMissingBlob) when there are none. */
  get(hash: string): Promise<Buffer>;
  /** The same bytes as a stream, and how many (for downloads: a result may be hundreds of MB). Rejects like get(). */
  open(hash: string): Promise<{ stream: Readable; bytes: number }>;
  /** Removes the bytes under a hash (the caller has checked nothing needs them); answers how many were freed, 0 when there were none. */
  delete(hash: string): Promise<number>;
  /** Where the blobs are, for logs (never a secret). */
  describe(): string;
  /** "ok", or why the store does not answer. Cheap: the answer is cached for a few seconds. */
  check(): Promise<string>;
  close(): Promise<void>;
}

/** How much a directory store reads at a time when it streams a blob. */
const READ_CHUNK = 1024 * 1024;

/** True for the error get() rejects with when nothing is stored under the hash. */
export function isMissingBlob(e: unknown): boolean {
  return (e as { code?: unknown } | null)?.code === "ENOENT";
}

/** The error a store's get() rejects with for a hash it has no bytes for: shaped like fs's ENOENT. */
export function missingBlob(hash: string): Error {
  return Object.assign(new Error(`No blob ${hash}`), { code: "ENOENT" });
}

/** A blob's bytes: text (stored as UTF-8), bytes, or parts of it end to end (a large merged result, never joined in memory). */
export type BlobData = string | Uint8Array | Uint8Array[];

export function sha256Hex(data: BlobData): string {
  const h = crypto.createHash("sha256");
  for (const part of Array.isArray(data) ? data : [data]) h.update(part);
  return h.digest("hex");
}

/** Refuses anything but a sha256 in lowercase hex, so no hash can name a path or key outside the store. */
export function checkHash(hash: string): string {
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error("not a sha256 hash");
  return hash;
}

/**
 * A health probe that runs at most once per `ttlMs` however often health is asked (concurrent
 * callers share one probe), and answers within `timeoutMs` even when the store hangs.
 */
export function cachedCheck(probe: (signal: AbortSignal) => Promise<void>, opts: { ttlMs?: number; timeoutMs?: number } = {}): () => Promise<string> {
  const ttlMs = opts.ttlMs ?? 5000;
  const timeoutMs = opts.timeoutMs ?? 2000;
  let last: { at: number; answer: Promise<string> } | undefined;
  return () => {
    if (last && Date.now() - last.at < ttlMs) return last.answer;
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const answer = Promise.race([
      probe(controller.signal).then(() => "ok"),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => {
          controller.abort();
          resolve(`no answer in ${timeoutMs / 1000} s`);
        }, timeoutMs);
        timer.unref();
      }),
    ])
      .catch((e: unknown) => (e as Error)?.message ?? String(e))
      .finally(() => clearTimeout(timer));
    last = { at: Date.now(), answer };
    return answer;
  };
}

/** Content-addressed files under <dir>/<hash[0..2]>/<hash>. */
export class DirectoryBlobStore implements BlobStore {
  readonly kind = "directory";
  readonly check: () => Promise<string>;

  constructor(private readonly dir: string) {
    this.check = cachedCheck(async () => {
      await fs.mkdir(this.dir, { recursive: true });
      await fs.access(this.dir, fs.constants.R_OK | fs.constants.W_OK);
    });
  }

  private file(hash: string) {
    checkHash(hash);
    return path.join(this.dir, hash.slice(0, 2), hash);
  }

  describe() {
    return `directory ${path.resolve(this.dir)}`;
  }

  async put(data: BlobData): Promise<string> {
    const hash = sha256Hex(data);
    const file = this.file(hash);
    await fs.mkdir(path.dirname(file), { recursive: true });
    // Write then rename, so a crash never leaves a truncated blob under its hash.
    const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`;
    await fs.writeFile(tmp, Array.isArray(data) ? Readable.from(data) : data);
    await fs.rename(tmp, file);
    return hash;
  }

  async get(hash: string): Promise<Buffer> {
    return fs.readFile(this.file(hash));
  }

  async open(hash: string) {
    const handle = await fs.open(this.file(hash));
    const { size } = await handle.stat().catch(async (e: Error) => {
      await handle.close();
      throw e;
    });
    // The stream closes the handle when it ends or is destroyed. Reads of 1 MiB, not the default
    // 64 KiB: a 1.7 MB shard in 2 reads instead of 26 (each a promise and a thread-pool trip).
    return { stream: handle.createReadStream({ highWaterMark: READ_CHUNK }), bytes: size };
  }

  async delete(hash: string): Promise<number> {
    const file = this.file(hash);
    try {
      const { size } = await fs.stat(file);
      await fs.unlink(file);
      return size;
    } catch (e) {
      if (isMissingBlob(e)) return 0;
      throw e;
    }
  }

  async close() {}
}

/** The store BLOB_STORE names (validated by parseEnv). The S3 client is loaded only when used. */
export async function createBlobStore(env: Env): Promise<BlobStore> {
  const config = parseBlobStore(env.BLOB_STORE);
  if (config.kind === "directory") return new DirectoryBlobStore(path.join(env.DATA_DIR, "blobs"));
  const { S3BlobStore } = await import("./s3Blobs");
  return new S3BlobStore({
    bucket: config.bucket,
    prefix: config.prefix,
    endpoint: env.S3_ENDPOINT,
    region: env.S3_REGION,
    forcePathStyle: env.S3_FORCE_PATH_STYLE ?? Boolean(env.S3_ENDPOINT),
    // Given both: these. Neither: the SDK's own chain (shared config and credentials files, SSO,
    // web identity, container or instance roles).
    credentials: env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
      ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) }
      : undefined,
  });
}
