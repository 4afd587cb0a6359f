/**
 * Where blobs live, from BLOB_STORE: unset (or "directory") is DATA_DIR/blobs; s3://bucket
 * or s3://bucket/prefix is a bucket of an S3-compatible store (S3_ENDPOINT names the server
 * when it is not AWS).
 */
export type BlobStoreConfig = { kind: "directory" } | { kind: "s3"; bucket: string; /** "" or ending in "/" */ prefix: string };

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
// S3's "safe" key characters, in segments between single slashes.
const PREFIX = /^[A-Za-z0-9!_.*'()-]+(\/[A-Za-z0-9!_.*'()-]+)*$/;

/** Throws an Error whose message never repeats the value (it might hold a pasted secret). */
export function parseBlobStore(value: string | undefined): BlobStoreConfig {
  if (!value || value === "directory") return { kind: "directory" };
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(value);
  if (!m) throw new Error('must be "directory" (the default: DATA_DIR/blobs) or s3://bucket/optional/prefix');
  const [, bucket, rest = ""] = m;
  if (/[@:]/.test(bucket)) {
    throw new Error("names only the bucket and a prefix: put the server in S3_ENDPOINT and the credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
  }
  if (!BUCKET.test(bucket)) throw new Error("the bucket name must be 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit");
  const prefix = rest.replace(/\/+$/, "");
  if (prefix && (!PREFIX.test(prefix) || prefix.split("/").some((s) => s === "." || s === ".."))) {
    throw new Error("the prefix after the bucket may hold letters, digits and !_.*'()- in segments between single slashes");
  }
  return { kind: "s3", bucket, prefix: prefix ? `${prefix}/` : "" };
}
