import { LRUCache } from "lru-cache";
import { parseCsvSliced, type CsvTable } from "./csvShards";

// Uploaded CSV files as parsed tables, by hash. A data file is uploaded once and trained on
// many times (one submission per learning rate, per shard count…), and parsing is most of a
// submission's time (100,000 rows × 21 columns: ~110 ms of ~170). So a file named *.csv is
// parsed when it is uploaded (the upload's answer says whether it can be used as CSV input, and
// how big it is) and its table kept a while; a submission takes it from here. Blobs are named
// by their content, so a kept table is never stale. Callers must not write to a table.

const MiB = 1024 * 1024;
/** Tables kept (their values' bytes), and for how long after their last use. */
const KEPT_BYTES = 64 * MiB;
const KEPT_MS = 10 * 60_000;

/** What a kept table holds: its values and its columns' names (a header may be most of a file). */
const sizeOf = (t: CsvTable) => t.values.byteLength + t.columns.reduce((s, c) => s + 2 * c.length + 32, 0);
const tables = new LRUCache<string, CsvTable>({ maxSize: KEPT_BYTES, sizeCalculation: sizeOf, ttl: KEPT_MS, updateAgeOnGet: true });
/** Parses under way, so an upload's and a submission's of the same file are one. */
const parsing = new Map<string, Promise<CsvTable>>();

/**
 * Why CSV files (by hash: the same bytes fail the same way) could not be used, most recent
 * last: a submission that fails costs nothing, so without this one large bad file could be
 * submitted again and again, each time read anew at seconds of CPU.
 */
const unusable = new Map<string, string>();
const UNUSABLE_REMEMBERED = 256;

export class UnusableCsv extends Error {}

/** The table of CSV file `hash` (its bytes read by `read` if it is not kept); throws UnusableCsv with the reason. */
export function csvTable(hash: string, read: () => Promise<Buffer>): Promise<CsvTable> {
  const known = unusable.get(hash);
  if (known !== undefined) return Promise.reject(new UnusableCsv(known));
  const kept = tables.get(hash);
  if (kept) return Promise.resolve(kept);
  let p = parsing.get(hash);
  if (!p) {
    p = read()
      .then((bytes) => parseCsvSliced(bytes).catch((e: Error) => {
        remember(hash, e.message);
        throw new UnusableCsv(e.message);
      }))
      .then((table) => {
        if (sizeOf(table) > KEPT_BYTES) return table;
        // The parse grows its buffer by doubling: a table kept holds its values alone.
        const kept = table.values.byteLength < table.values.buffer.byteLength ? { ...table, values: table.values.slice() } : table;
        tables.set(hash, kept);
        return kept;
      })
      .finally(() => parsing.delete(hash));
    parsing.set(hash, p);
  }
  return p;
}

/** What an upload's answer says of a file named *.csv: its size as a table, or why it cannot be CSV input. */
export type CsvSummary = { rows: number; columns: number } | { error: string };

/**
 * Uploads' parses under way. Uploading costs its sender nothing but room in its quota, and a
 * parse costs the server several times what hashing and storing the bytes does (100,000 rows ×
 * 21 columns: ~110 ms against ~25). So one at a time: an upload that finds one running is
 * answered without a summary, and its file is parsed at its first submission instead.
 */
let uploadParses = 0;
const UPLOAD_PARSES_AT_ONCE = 1;

/** Undefined: not read now (another upload's file is being read). */
export async function summarizeCsv(hash: string, bytes: Buffer): Promise<CsvSummary | undefined> {
  const free = unusable.has(hash) || tables.has(hash) || parsing.has(hash);
  if (!free && uploadParses >= UPLOAD_PARSES_AT_ONCE) return undefined;
  uploadParses++;
  try {
    const t = await csvTable(hash, async () => bytes);
    return { rows: t.rows, columns: t.columns.length };
  } catch (e) {
    if (e instanceof UnusableCsv) return { error: e.message };
    throw e;
  } finally {
    uploadParses--;
  }
}

function remember(hash: string, message: string) {
  unusable.set(hash, message);
  if (unusable.size > UNUSABLE_REMEMBERED) unusable.delete(unusable.keys().next().value!);
}
