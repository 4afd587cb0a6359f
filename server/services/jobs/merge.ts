import { mergeInThread, reduceOutputs } from "../../../worker/sandbox/reduceOnServer";
import type { BlobStore } from "../../store/blobs";
import type { Db } from "../../store/prisma";
import { hotStore } from "../../store/hotStore";
import { FairSlots } from "../../../worker/sandbox/fairSlots";
import { DEFAULT_TRIM, isNumericMerge } from "../programs/aggregate";
import { mergeValues, type ServerMerge } from "./mergeValues";

/**
 * Bytes of unit outputs one merged result is made from at most: the merge holds them
 * all, parsed, and its result as one string (V8's longest is ~512 MB).
 */
const MAX_MERGE_BYTES = 256 * 2 ** 20;

/** Results above this size go to the blob store instead of the job row. */
const INLINE_RESULT_BYTES = 64 * 1024;

/** A job's result (its JSON text) as stored: inline when small, else a blob's hash. */
export async function storedResult(blobs: BlobStore, json: string, bytes = Buffer.byteLength(json)): Promise<{ result: string | null; resultBlob: string | null }> {
  // As bytes once: hashing and writing a string each encode it again.
  if (bytes > INLINE_RESULT_BYTES) return { result: null, resultBlob: await blobs.put(Buffer.from(json)) };
  return { result: json, resultBlob: null };
}

const NOT_ALL_DONE = "the job ended before every unit had a validated result";
/** Outputs read at once by a concatenation: pages of 8 to 256 units of about this many bytes. */
const PAGE_BYTES = 16 * 2 ** 20;
/** Outputs above this make a merge "big": big merges run one at a time. */
const BIG_MERGE_BYTES = 16 * 2 ** 20;
/**
 * Outputs above this are merged in a sandbox thread rather than on the event loop: parsing
 * and merging them took ~40 ms a megabyte there (220 MB of a stranger's own job's outputs,
 * merged by a mean, held every request 8.6 s).
 */
export const THREAD_MERGE_BYTES = 2 ** 20;

/** One at a time, in order: FairSlots with one slot and one key. */
const reads = new FairSlots(1);
const bigMerges = new FairSlots(1);

/** Runs `run` after the big merges before it; aborted while it waits, answers `stopped` at once (a cancel must not wait its turn). */
export function oneBigAtATime<T>(run: () => Promise<T>, stopped: T, signal?: AbortSignal): Promise<T> {
  return bigMerges.run("", run, signal).catch((e: unknown) => {
    if (signal?.aborted && e === signal.reason) return stopped;
    throw e;
  });
}

/** `[out0,out1,…]` from the stored texts, a page at a time, as UTF-8 parts of the blob. */
async function concatStored(deps: { db: Db; blobs: BlobStore }, jobId: string, rowsPerPage: number, room?: MergeRoom): Promise<Merged> {
  const parts: Buffer[] = [];
  let size = 0;
  const ok = await oneAtATime(async () => {
    for await (const page of hotStore(deps.db).outputPages(jobId, rowsPerPage)) {
      if (page.some((u) => !u.done)) return false;
      if (!page.length) continue;
      const part = Buffer.from((parts.length ? "," : "[") + page.map((u) => u.output).join(","));
      parts.push(part);
      size += part.length;
    }
    return true;
  });
  if (!ok) return { error: NOT_ALL_DONE };
  parts.push(Buffer.from(parts.length ? "]" : "[]"));
  const refused = await room?.(size + 1);
  if (refused) return { error: refused };
  if (size + 1 <= INLINE_RESULT_BYTES) return { result: Buffer.concat(parts).toString("utf8"), resultBlob: null };
  return { result: null, resultBlob: await deps.blobs.put(parts) };
}

/**
 * Merges read their outputs one after another. The reads go a page at a time with the event
 * loop free in between; jobs that end together (a feed of big jobs, a cancelled batch) would
 * otherwise each read a page in the same turn.
 */
function oneAtATime<T>(read: () => Promise<T>): Promise<T> {
  return reads.run("", read);
}

export type Merged = { result: string | null; resultBlob: string | null } | { error: string };

/** Why a merged result of `bytes` may not be stored, if it may not (the owner's output budget: coordinator/outputBudget.ts). */
export type MergeRoom = (bytes: number) => Promise<string | undefined>;

/**
 * The job's merged result from its validated unit outputs, in unit order: a built-in
 * kernel's reduce; for a program, the outputs concatenated (a JSON array, or the bytes of a
 * WASM program's outputs end to end) or merged by the program's own reduce, which runs
 * sandboxed (QuickJS for JS, a time-limited thread for WASM): never as plain server code.
 * `signal` stops a reduce under way (the job was cancelled meanwhile).
 */
export async function mergeJobResult(deps: { db: Db; blobs: BlobStore }, jobId: string, signal?: AbortSignal, room?: MergeRoom): Promise<Merged> {
  // Counted before anything is read: reading 1.2 GB of outputs held the loop 17 s.
  const bytes = await hotStore(deps.db).outputBytes(jobId);
  if (bytes > MAX_MERGE_BYTES) {
    return { error: `Could not merge the results: the units' outputs hold ${Math.round(bytes / 2 ** 20)} MB, more than the ${MAX_MERGE_BYTES / 2 ** 20} MB a merged result may; read them per unit (units.json)` };
  }
  // A merge holds its outputs (and more) in memory: large ones take turns, so jobs ending
  // together cannot each hold hundreds of MB at once.
  if (bytes <= BIG_MERGE_BYTES) return merge(deps, jobId, bytes, signal, room);
  return oneBigAtATime(() => merge(deps, jobId, bytes, signal, room), { error: "stopped: the job was cancelled" }, signal);
}

async function merge(deps: { db: Db; blobs: BlobStore }, jobId: string, bytes: number, signal?: AbortSignal, room?: MergeRoom): Promise<Merged> {
  const job = await deps.db.job.findUniqueOrThrow({
    where: { id: jobId },
    select: { ownerId: true, kernel: true, params: true, merge: true, timeLimitMs: true, chunks: true, program: { select: { kind: true, hash: true, scriptHash: true } } },
  });
  // A JS program's outputs concatenated: their stored JSON texts end to end, never parsed nor
  // joined into one string (80 outputs of 3 MB left the server at ~1 GB when each was parsed
  // and the whole stringified).
  if (job.program?.kind === "js" && job.merge !== "reduce" && !isNumericMerge(job.merge)) return concatStored(deps, jobId, Math.max(8, Math.min(256, Math.floor(PAGE_BYTES / Math.max(1, bytes / Math.max(1, job.chunks))))), room);
  // Raw: a 10,000-unit job's outputs in ~10 ms rather than a Prisma findMany's ~200.
  const units = await oneAtATime(() => hotStore(deps.db).unitOutputs(jobId));
  if (units.some((u) => !u.done)) return { error: NOT_ALL_DONE };
  const texts = units.map((u) => u.output!);
  const params = JSON.parse(job.params) as Record<string, unknown>;
  let json: string;
  try {
    if (job.program && job.merge === "reduce") {
      const code = await deps.blobs.get(job.program.kind === "js" ? job.program.scriptHash! : job.program.hash).catch((e: Error) => {
        // The store's own trouble (its message names files on the server) is not the consumer's.
        console.error(`merging job ${jobId}: reading the program failed: ${e.message}`);
        throw new Error("the program could not be read back (internal error)");
      });
      // The stored texts go to the sandbox as one array's text: parsed there, not here.
      const { result } = await reduceOutputs({
        kind: job.program.kind as "js" | "wasm",
        code: job.program.kind === "js" ? code.toString("utf8") : new Uint8Array(code),
        outputsJson: `[${texts.join(",")}]`,
        params: (params as { params?: unknown }).params ?? {},
        timeMs: job.timeLimitMs ?? 30_000,
        memoryMb: (params as { limits?: { memoryMb?: number } }).limits?.memoryMb ?? 256,
      }, { owner: job.ownerId, signal });
      json = JSON.stringify(result ?? null);
    } else {
      // A kernel's reduce, a numeric merge, or a WASM program's outputs (bytes) end to end.
      const how: ServerMerge = !job.program ? { kind: "kernel", kernel: job.kernel, params }
        : isNumericMerge(job.merge) ? { kind: "numeric", merge: job.merge, trim: (params as { trim?: number }).trim ?? DEFAULT_TRIM }
        : { kind: "bytes" };
      json = bytes > THREAD_MERGE_BYTES
        ? await mergeInThread(how, texts, Math.min(4096, 128 + Math.ceil((6 * bytes) / 2 ** 20)), { owner: job.ownerId, signal })
        : mergeValues(how, texts);
    }
  } catch (e) {
    return { error: `Could not merge the results: ${(e as Error).message}` };
  }
  const size = Buffer.byteLength(json);
  const refused = await room?.(size);
  if (refused) return { error: refused };
  return storedResult(deps.blobs, json, size);
}
