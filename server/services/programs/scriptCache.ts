import { LRUCache } from "lru-cache";
import type { BlobStore } from "../../store/blobs";

// An iterative job's step runs its program's compiled script every round, and the audits of its
// units run it again: read from the blob store each time, that was a file opened, read and
// closed (on S3, a GET) per round. Blobs are named by their content, so a kept copy is never stale.

const MiB = 1024 * 1024;
const scripts = new LRUCache<string, string>({ maxSize: 64 * MiB, sizeCalculation: (s) => Math.max(1, s.length) });

/** A program's compiled script (a blob of UTF-8 text), kept by hash. */
export async function compiledScript(blobs: BlobStore, hash: string): Promise<string> {
  const kept = scripts.get(hash);
  if (kept !== undefined) return kept;
  const script = (await blobs.get(hash)).toString("utf8");
  scripts.set(hash, script);
  return script;
}
