import { z } from "zod";
import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { isSha256 } from "./programs";
import { withinJsonBounds } from "../jsonInput";
import { shardRows, type CsvTable } from "./csvShards";
import { csvTable, UnusableCsv } from "./csvTables";
import { countLines, lineChunks } from "./lineChunks";

const hash = z.string().refine(isSha256, "must be the sha256 of an uploaded data file");

/** How a program job's input is cut into units. */
export const programInputSchema = z.discriminatedUnion("mode", [
  /** One unit per element. */
  z.object({ mode: z.literal("json"), items: z.array(z.unknown()).min(1, "Give at least one item.").superRefine(withinJsonBounds) }),
  /** [start, end) cut into `chunks` contiguous ranges: each unit gets { start, end }. */
  z.object({ mode: z.literal("range"), start: z.number().int(), end: z.number().int() }),
  /** An uploaded text file cut into `chunks` units of whole lines. */
  z.object({ mode: z.literal("lines"), data: hash }),
  /** An uploaded file cut into blocks of `blockBytes` bytes: one unit per block. */
  z.object({ mode: z.literal("blocks"), data: hash, blockBytes: z.number().int().min(1).max(64 * 1024 * 1024) }),
  /**
   * An uploaded CSV of numbers cut into `chunks` shards of whole rows; each unit gets its
   * shard as the bytes of a row-major Float64Array (see csvShards.ts), `ctx.columns` the names.
   */
  z.object({ mode: z.literal("csv"), data: hash }),
]);
export type ProgramInput = z.infer<typeof programInputSchema>;

/** A unit's input as volunteers receive it: inline, or a blob they fetch by hash. */
export type UnitInput = { value: unknown } | { blob: string; encoding: "text" | "bytes" };

/** Inline inputs above this size are stored as blobs instead of travelling in task frames. */
const INLINE_LIMIT = 16 * 1024;

async function inline(store: Store, value: unknown): Promise<UnitInput> {
  const json = JSON.stringify(value);
  if (json === undefined) throw new UserError("BAD_REQUEST", "Input items must be JSON values.");
  return json.length <= INLINE_LIMIT ? { value } : { blob: await store.put(json), encoding: "text" };
}

/** Puts a job's input blobs, counting their bytes (with its units' rows, Job.inputBytes: the owner's budget until they are collected). */
class Store {
  bytes = 0;
  constructor(private readonly deps: AppDeps) {}
  put(data: string | Uint8Array): Promise<string> {
    this.bytes += typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
    return this.deps.blobs.put(data);
  }
}

/** NOT_FOUND unless the user uploaded data file `h`. */
async function checkOwned(deps: AppDeps, ownerId: string, h: string) {
  const row = await deps.db.dataFile.findUnique({ where: { hash_ownerId: { hash: h, ownerId } }, select: { ownerId: true } });
  if (!row) throw new UserError("NOT_FOUND", `No data file ${h}: upload it first.`);
}

async function dataFile(deps: AppDeps, ownerId: string, h: string) {
  await checkOwned(deps, ownerId, h);
  return deps.blobs.get(h);
}

/**
 * Splits a program job's input into unit inputs (storing chunk blobs as needed), with the
 * fields of `ctx` every unit gets (a CSV's `columns`).
 */
export async function splitProgramInput(
  deps: AppDeps, ownerId: string, input: ProgramInput, chunks: number | undefined, maxUnits: number,
): Promise<{ units: UnitInput[]; context?: Record<string, unknown>; storedBytes: number }> {
  const store = new Store(deps);
  const split = await splitInto(deps, store, ownerId, input, chunks, maxUnits);
  // The units' rows hold their inputs too (JSON items of up to 16 KiB inline): counted alike.
  let rowBytes = 0;
  for (const u of split.units) rowBytes += JSON.stringify(u).length;
  return { ...split, storedBytes: store.bytes + rowBytes };
}

async function splitInto(
  deps: AppDeps, store: Store, ownerId: string, input: ProgramInput, chunks: number | undefined, maxUnits: number,
): Promise<{ units: UnitInput[]; context?: Record<string, unknown> }> {
  if (input.mode === "csv") {
    const n = chunks ?? Math.min(DEFAULT_CSV_SHARDS, maxUnits);
    if (n > maxUnits) throw new UserError("BAD_REQUEST", `Too many units: ${n}. A job can have at most ${maxUnits}.`);
    await checkOwned(deps, ownerId, input.data);
    let table: CsvTable;
    try {
      // Parsed at its upload if it was named *.csv (kept a while), else now; refused from memory if known to be unusable.
      table = await csvTable(input.data, () => deps.blobs.get(input.data));
    } catch (e) {
      if (e instanceof UnusableCsv) throw new UserError("BAD_REQUEST", `The CSV file cannot be used: ${e.message}`);
      throw e;
    }
    if (table.rows < n && chunks === undefined) return csvUnits(store, table, table.rows);
    if (table.rows < n) throw new UserError("BAD_REQUEST", `The CSV file has ${table.rows} rows, fewer than the ${n} shards asked for.`);
    return csvUnits(store, table, n);
  }
  return { units: await splitPlain(deps, store, ownerId, input, chunks, maxUnits) };
}

/** Shards a CSV input is cut into when no chunk count is given. */
export const DEFAULT_CSV_SHARDS = 10;

/** Shards stored at once: each put hashes its shard, then writes it (on the thread pool) while the next is hashed. */
const PUTS_AT_ONCE = 8;

async function csvUnits(store: Store, table: CsvTable, n: number) {
  const shards = shardRows(table, n);
  const units: UnitInput[] = new Array(shards.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < shards.length; i = next++) units[i] = { blob: await store.put(shards[i]), encoding: "bytes" };
  };
  await Promise.all(Array.from({ length: Math.min(PUTS_AT_ONCE, shards.length) }, worker));
  return { units, context: { columns: table.columns } };
}

async function splitPlain(
  deps: AppDeps, store: Store, ownerId: string, input: Exclude<ProgramInput, { mode: "csv" }>, chunks: number | undefined, maxUnits: number,
): Promise<UnitInput[]> {
  const check = (n: number) => {
    if (n > maxUnits) throw new UserError("BAD_REQUEST", `Too many units: ${n}. A job can have at most ${maxUnits}.`);
    return n;
  };
  const need = () => {
    if (chunks === undefined) throw new UserError("BAD_REQUEST", `Give a chunk count for ${input.mode} input.`);
    return check(chunks);
  };
  switch (input.mode) {
    case "json":
      check(input.items.length);
      return Promise.all(input.items.map((v) => inline(store, v)));
    case "range": {
      const n = need();
      const size = input.end - input.start;
      if (size < n) throw new UserError("BAD_REQUEST", `The range [${input.start}, ${input.end}) has fewer numbers than the ${n} chunks asked for.`);
      return Array.from({ length: n }, (_, i) => ({
        value: { start: input.start + Math.floor((size * i) / n), end: input.start + Math.floor((size * (i + 1)) / n) },
      }));
    }
    case "lines": {
      const n = need();
      const bytes = await dataFile(deps, ownerId, input.data);
      const lines = await countLines(bytes);
      if (lines < n) throw new UserError("BAD_REQUEST", `The file has ${lines} lines, fewer than the ${n} chunks asked for.`);
      const out: UnitInput[] = [];
      for (const part of await lineChunks(bytes, lines, n)) out.push({ blob: await store.put(part), encoding: "text" });
      return out;
    }
    case "blocks": {
      const bytes = await dataFile(deps, ownerId, input.data);
      const n = check(Math.ceil(bytes.length / input.blockBytes));
      if (n === 0) throw new UserError("BAD_REQUEST", "The data file is empty.");
      const out: UnitInput[] = [];
      for (let i = 0; i < n; i++) out.push({ blob: await store.put(bytes.subarray(i * input.blockBytes, (i + 1) * input.blockBytes)), encoding: "bytes" });
      return out;
    }
  }
}
