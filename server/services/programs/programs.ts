import crypto from "node:crypto";
import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { compileJsProgram, inspectWasm } from "../../../worker/sandbox/compileJs";
import { warmStep } from "../../../worker/sandbox/stepSandbox";
import { checkStorageRoom, releaseBlob } from "./files";
import { summarizeCsv } from "./csvTables";

const WASM_MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d]);
export const isSha256 = (s: string) => /^[0-9a-f]{64}$/.test(s);

/**
 * Stores an uploaded program under the sha256 of its bytes, after checking it: a JS module
 * is compiled into the self-contained script volunteers run (syntax errors, imports and a
 * missing `run` are refused); a WASM module must follow the ABI and cap its memory.
 * Uploading the same bytes again returns the stored program.
 */
export async function createProgram(deps: AppDeps, ownerId: string, upload: { name: string; bytes: Buffer }) {
  const hash = crypto.createHash("sha256").update(upload.bytes).digest("hex");
  const existing = await deps.db.program.findUnique({ where: { hash } });
  const name = upload.name.slice(0, 200) || "program";
  if (existing) {
    // The same bytes from another account: its own upload too, counted against its quota, so
    // the first uploader deleting theirs cannot take the program from under it.
    const mine = await deps.db.programUpload.findUnique({ where: { hash_ownerId: { hash, ownerId } }, select: { hash: true } });
    if (!mine) {
      // What the program takes on disk is what any other uploader's row says (rows from before
      // uploads were counted whole have none of the compiled files: measured then).
      const other = await deps.db.programUpload.findFirst({ where: { hash }, select: { size: true }, orderBy: { createdAt: "desc" } });
      const size = other && other.size > existing.size ? other.size : await programDiskSize(deps, existing);
      await checkStorageRoom(deps, ownerId, size);
      await deps.db.programUpload.upsert({ where: { hash_ownerId: { hash, ownerId } }, create: { hash, ownerId, name, size }, update: {} });
    }
    warmForRounds(deps, JSON.parse(existing.exports) as string[]);
    return view(existing);
  }
  await checkStorageRoom(deps, ownerId, upload.bytes.length);
  let data: { kind: string; scriptHash: string | null; sourceMapHash: string | null; exports: string[]; hasReduce: boolean; comparator: string | null };
  let compiledBytes = 0;
  try {
    if (upload.bytes.subarray(0, 4).equals(WASM_MAGIC)) {
      const info = await inspectWasm(new Uint8Array(upload.bytes), deps.env.WASM_MEMORY_LIMIT_MB * 1024 * 1024);
      data = { kind: "wasm", scriptHash: null, sourceMapHash: null, exports: info.exports, hasReduce: info.hasReduce, comparator: null };
    } else {
      const text = upload.bytes.toString("utf8");
      if (text.includes("\uFFFD")) throw new Error("a program is a JavaScript module (UTF-8 text) or a WebAssembly module");
      const compiled = await compileJsProgram(text, { fileName: name, owner: ownerId });
      compiledBytes = Buffer.byteLength(compiled.script) + Buffer.byteLength(compiled.sourceMap);
      // Checked again with what compiling made (several times the upload) before any of it is stored.
      await checkStorageRoom(deps, ownerId, upload.bytes.length + compiledBytes);
      const scriptHash = await deps.blobs.put(compiled.script);
      const sourceMapHash = await deps.blobs.put(compiled.sourceMap);
      data = {
        kind: "js", scriptHash, sourceMapHash, exports: compiled.exports, hasReduce: compiled.exports.includes("reduce"),
        comparator: compiled.comparator ? JSON.stringify(compiled.comparator) : null,
      };
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError("BAD_REQUEST", `Invalid program: ${(e as Error).message}`);
  }
  await deps.blobs.put(upload.bytes);
  const row = await deps.db.program.upsert({
    where: { hash },
    create: { hash, name, size: upload.bytes.length, ownerId, ...data, exports: JSON.stringify(data.exports) },
    update: {},
  });
  // The compiled script and its source map take several times the upload (a 2.8 MB program
  // took 14 MB): the account's row counts all of it, as the second check did.
  const size = row.scriptHash === data.scriptHash ? upload.bytes.length + compiledBytes : await programDiskSize(deps, row);
  await deps.db.programUpload.upsert({ where: { hash_ownerId: { hash, ownerId } }, create: { hash, ownerId, name, size }, update: {} });
  warmForRounds(deps, data.exports);
  return view(row);
}

/**
 * A program that steps is about to run in rounds, most likely: the step thread (a thread and
 * QuickJS, ~0.3 s to start) starts now, while the data is uploaded, not at the submission,
 * whose first step waited for it. One thread at most, ended after a minute unused.
 */
function warmForRounds(deps: AppDeps, exports: string[]) {
  if (exports.includes("step")) warmStep(deps.env.WASM_MEMORY_LIMIT_MB);
}

/** Bytes a program takes in the blob store: the upload, and for JS its compiled script and source map. */
async function programDiskSize(deps: AppDeps, row: { size: number; scriptHash: string | null; sourceMapHash: string | null }): Promise<number> {
  let size = row.size;
  for (const h of [row.scriptHash, row.sourceMapHash]) {
    if (!h) continue;
    const blob = await deps.blobs.open(h).catch(() => null);
    if (blob) {
      size += blob.bytes;
      blob.stream.destroy();
    }
  }
  return size;
}

function view(row: { hash: string; kind: string; name: string; size: number; scriptHash: string | null; exports: string; hasReduce: boolean; comparator: string | null; createdAt: Date }) {
  return {
    // The compiled script's blob (JS), which the jobs page fetches to time a trial run.
    hash: row.hash, kind: row.kind as "js" | "wasm", scriptHash: row.scriptHash, name: row.name, size: row.size, exports: JSON.parse(row.exports) as string[],
    hasReduce: row.hasReduce, comparator: row.comparator ? (JSON.parse(row.comparator) as { kind: string; relative?: number; absolute?: number }) : null,
    createdAt: row.createdAt,
  };
}

/**
 * A program the caller uploaded (its own upload of the bytes: uploading a stored program
 * again is free). Another account's program is not found, as if never stored: given by hash
 * alone, it let anyone run a program they never had (its compiled code then went to their
 * volunteers) and told them whether someone had uploaded a file they knew.
 */
export async function getProgram(deps: AppDeps, hash: string, ownerId: string | null) {
  if (!isSha256(hash)) throw new UserError("BAD_REQUEST", "A program is named by the sha256 of its bytes (64 hex digits).");
  const mine = ownerId !== null && (await deps.db.programUpload.findUnique({ where: { hash_ownerId: { hash, ownerId } }, select: { hash: true } }));
  const row = mine ? await deps.db.program.findUnique({ where: { hash } }) : null;
  if (!row) throw new UserError("NOT_FOUND", `No program ${hash} of yours. Upload it first.`);
  return view(row);
}

/** Stores an uploaded data file (to be split into unit inputs at submit; a CSV file parsed at once, see csvTables.ts). */
export async function createDataFile(deps: AppDeps, ownerId: string, upload: { name: string; bytes: Buffer; asCsv?: boolean }) {
  const hash = await deps.blobs.put(upload.bytes);
  // Checked once the hash is known (put computes it), as the same bytes again take no more room.
  const mine = await deps.db.dataFile.findUnique({ where: { hash_ownerId: { hash, ownerId } }, select: { hash: true } });
  if (!mine) {
    try {
      await checkStorageRoom(deps, ownerId, upload.bytes.length);
    } catch (e) {
      await releaseBlob(deps, hash);
      throw e;
    }
  }
  const row = await deps.db.dataFile.upsert({
    where: { hash_ownerId: { hash, ownerId } },
    create: { hash, name: upload.name.slice(0, 200) || "data", size: upload.bytes.length, ownerId },
    update: {},
  });
  // Named *.csv (or sent with ?as=csv): read as a table now, kept for the submissions that follow; the answer says how it reads.
  const csv = upload.asCsv || /\.csv$/i.test(upload.name) ? await summarizeCsv(hash, upload.bytes) : undefined;
  return { hash: row.hash, name: row.name, size: row.size, ...(csv ? { csv } : {}) };
}
