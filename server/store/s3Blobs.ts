import { STATUS_CODES } from "node:http";
import type { Readable } from "node:stream";
import { DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { type BlobData, type BlobStore, cachedCheck, checkHash, missingBlob, sha256Hex } from "./blobs";

export interface S3BlobStoreOptions {
  bucket: string;
  /** "" or ending in "/". */
  prefix: string;
  /** For MinIO, R2, Ceph…; unset: AWS. */
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  /** Unset: the SDK's default chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Tries per request, the first included (default 3). */
  maxAttempts?: number;
}

/** Blobs at least this large are looked for before they are uploaded (a HEAD costs less than the bytes). */
const HEAD_FIRST_BYTES = 64 * 1024;

/**
 * Content-addressed objects at `<prefix><hash[0..2]>/<hash>` in an S3-compatible bucket. An
 * object appears whole or not at all, so nodes never see half a blob; putting the same bytes
 * twice stores the same object.
 */
export class S3BlobStore implements BlobStore {
  readonly kind = "s3";
  readonly check: () => Promise<string>;
  private readonly client: S3Client;

  constructor(private readonly opts: S3BlobStoreOptions) {
    this.client = new S3Client({
      region: opts.region,
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      forcePathStyle: opts.forcePathStyle,
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      maxAttempts: opts.maxAttempts ?? 3,
      // requestTimeout is the longest a socket may stay silent, not a bound on the whole upload.
      requestHandler: { connectionTimeout: 5000, requestTimeout: 60_000 },
      // The SDK's default since 2025 adds CRC32 checksum headers to every upload and asks for
      // them on every download; several S3-compatible servers refuse or mishandle them. The
      // bytes are already guarded by their sha256: the signed payload hash on upload, and
      // volunteers check each blob against its name on download.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
    this.check = cachedCheck(async (abortSignal) => {
      try {
        await this.client.send(new HeadBucketCommand({ Bucket: opts.bucket }), { abortSignal });
      } catch (e) {
        throw new Error(`HeadBucket failed: ${explain(e)}`);
      }
    });
  }

  private key(hash: string) {
    checkHash(hash);
    return `${this.opts.prefix}${hash.slice(0, 2)}/${hash}`;
  }

  describe() {
    return `s3://${this.opts.bucket}/${this.opts.prefix}${this.opts.endpoint ? ` at ${this.opts.endpoint}` : ""}`;
  }

  async put(data: BlobData): Promise<string> {
    const hash = sha256Hex(data);
    const Key = this.key(hash);
    const Body = typeof data === "string" ? Buffer.from(data, "utf8") : Array.isArray(data) ? Buffer.concat(data) : data;
    if (Body.byteLength >= HEAD_FIRST_BYTES && (await this.exists(Key))) return hash;
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.opts.bucket, Key, Body, ContentType: "application/octet-stream" }));
    } catch (e) {
      throw new Error(this.failure("PutObject", Key, e), { cause: e });
    }
    return hash;
  }

  async get(hash: string): Promise<Buffer> {
    const Key = this.key(hash);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.opts.bucket, Key }));
      const bytes = await out.Body!.transformToByteArray();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (e) {
      // Only a missing key is "missing": a missing bucket or a refusal is the store's trouble.
      if ((e as Error)?.name === "NoSuchKey") throw missingBlob(hash);
      throw new Error(this.failure("GetObject", Key, e), { cause: e });
    }
  }

  async open(hash: string) {
    const Key = this.key(hash);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.opts.bucket, Key }));
      return { stream: out.Body as Readable, bytes: Number(out.ContentLength ?? 0) };
    } catch (e) {
      if ((e as Error)?.name === "NoSuchKey") throw missingBlob(hash);
      throw new Error(this.failure("GetObject", Key, e), { cause: e });
    }
  }

  async delete(hash: string): Promise<number> {
    const Key = this.key(hash);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.opts.bucket, Key }));
      await this.client.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key }));
      return Number(head.ContentLength ?? 0);
    } catch (e) {
      if ((e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode === 404) return 0;
      throw new Error(this.failure("DeleteObject", Key, e), { cause: e });
    }
  }

  private async exists(Key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.opts.bucket, Key }));
      return true;
    } catch (e) {
      // A HEAD's 404 has no body to say whether the key or the bucket is missing: the PUT will tell.
      if ((e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode === 404) return false;
      throw new Error(this.failure("HeadObject", Key, e), { cause: e });
    }
  }

  private failure(operation: string, key: string, e: unknown): string {
    return `S3 blob store ${this.describe()}: ${operation} ${key} failed: ${explain(e)}`;
  }

  async close() {
    this.client.destroy();
  }
}

/** What went wrong, with a hint when the cause is a usual one; never a credential. */
function explain(e: unknown): string {
  const err = (e ?? {}) as { name?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const status = err.$metadata?.httpStatusCode;
  // A HEAD's error has no body: the SDK calls it "NotFound", "Unknown" or "UnknownError".
  const vague = (s?: string) => !s || s === "Error" || s === "Unknown" || s === "UnknownError";
  const name = !vague(err.name) ? err.name! : status ? STATUS_CODES[status] : undefined;
  const message = !vague(err.message) ? err.message! : "";
  let what = name && !message.includes(name) ? [name, message].filter(Boolean).join(": ") : message || name || "failed";
  if (status) what += ` (HTTP ${status})`;
  return `${what}${hint(err.name, err.code, status)}`;
}

function hint(name: string | undefined, code: string | undefined, status: number | undefined): string {
  if (name === "NoSuchBucket" || (name === "NotFound" && status === 404)) return "; does the bucket exist? (BLOB_STORE names it)";
  if (name === "CredentialsProviderError") return "; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or another source of the AWS credential chain)";
  if (status === 401 || status === 403) return "; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and what the bucket's policy allows";
  if (name === "AbortError" || name === "TimeoutError") return "; the store did not answer in time";
  if (code && /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH)$/.test(code)) {
    return "; is S3_ENDPOINT right and the server up?";
  }
  return "";
}
