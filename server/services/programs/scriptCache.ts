import { LRUCache } from "lru-cache";
import type { BlobStore } from "../../store/blobs";

// An iterative job's step runs its program every round, and the audits of its units run it
// again: read from the blob store each time, that was a file opened, read and closed (on S3, a
// GET) per round. Blobs are named by their content, so a kept copy is never stale. Callers get
// the kept value itself: a WASM module's bytes are sent to a thread (copied), never written to.

const MiB = 1024 * 1024;
const kept = new LRUCache<string, string | Uint8Array>({ maxSize: 64 * MiB, sizeCalculation: (v) => Math.max(1, v.length) });

async function keep<T extends string | Uint8Array>(key: string, read: () => Promise<T>): Promise<T> {
  const hit = kept.get(key);
  if (hit !== undefined) return hit as T;
  const value = await read();
  kept.set(key, value);
  return value;
}

/** A JS program's compiled script (a blob of UTF-8 text), kept by hash. */
export function compiledScript(blobs: BlobStore, hash: string): Promise<string> {
  return keep(`js:${hash}`, async () => (await blobs.get(hash)).toString("utf8"));
}

/** A WASM program's module bytes, kept by hash. */
export function wasmModule(blobs: BlobStore, hash: string): Promise<Uint8Array> {
  return keep(`wasm:${hash}`, async () => new Uint8Array(await blobs.get(hash)));
}
