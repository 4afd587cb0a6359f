import fs from "node:fs/promises";
import { InputBudgetExceeded } from "./inputBudget";
import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { formatBytes } from "../../http/body";
import { outputBytesHeld } from "./outputStorage";
import { blobOfRow } from "../../coordinator/liveBlobs";

/**
 * What an account keeps in the blob store (its programs and data files), against
 * ACCOUNT_STORAGE_BYTES. Without a bound, one free account uploading 64 MiB files in a loop
 * fills the server's disk. Jobs' inputs and outputs have budgets of their own (below, and
 * outputStorage.ts).
 */
export async function storageUsed(deps: AppDeps, ownerId: string): Promise<number> {
  const [data, programs] = await Promise.all([
    deps.db.dataFile.aggregate({ where: { ownerId }, _sum: { size: true } }),
    deps.db.programUpload.aggregate({ where: { ownerId }, _sum: { size: true } }),
  ]);
  return (data._sum.size ?? 0) + (programs._sum.size ?? 0);
}

/**
 * Refuses (PAYLOAD_TOO_LARGE, answered 413) an upload of `bytes` that would take the account
 * past its quota. Two uploads of one account checked at once may both pass: the quota can be
 * overrun by one upload (UPLOADS_PER_ACCOUNT bounds how many run at once on a node).
 * `unlessSize`: let it pass when the account has a data file of that size (checked again by hash).
 */
export async function checkStorageRoom(deps: AppDeps, ownerId: string, bytes: number, opts: { unlessSize?: number } = {}): Promise<void> {
  const quota = deps.env.ACCOUNT_STORAGE_BYTES;
  if (quota === 0) return;
  const used = await storageUsed(deps, ownerId);
  if (used + bytes <= quota) return;
  if (opts.unlessSize !== undefined && (await deps.db.dataFile.count({ where: { ownerId, size: opts.unlessSize } })) > 0) return;
  throw new UserError(
    "PAYLOAD_TOO_LARGE",
    `Your programs and data files take ${formatBytes(used)} of your ${formatBytes(quota)}; this upload of ${formatBytes(bytes)} does not fit. ` +
      "Delete files you no longer need (the Files card on the jobs page, or `tabgrid files rm HASH`).",
  );
}

/**
 * Bytes of the inputs the account's jobs stored (their chunks, CSV shards and JSON items, in
 * blobs or in their units' rows) and that are not collected yet: a job's count while it runs
 * and until collectJobInputs removes them after its end.
 */
export async function inputBytesHeld(deps: AppDeps, ownerId: string): Promise<number> {
  const r = await deps.db.job.aggregate({ where: { ownerId, inputBytes: { gt: 0 } }, _sum: { inputBytes: true } });
  return r._sum.inputBytes ?? 0;
}

/**
 * Refuses (413) a job whose stored inputs would take the account's jobs past
 * ACCOUNT_STORAGE_BYTES of inputs (a budget apart from its files', so a job may cut a file as
 * large as the quota). Without it, a free account cut one 16 MiB file into new chunks with each
 * submission, cancelled each job at once (its escrow back) and stored 120 MiB a second that
 * nothing counted and nothing removed, until every upload and submission was refused for want
 * of disk.
 */
export async function checkInputRoom(deps: AppDeps, ownerId: string, bytes: number): Promise<void> {
  const quota = deps.env.ACCOUNT_STORAGE_BYTES;
  if (quota === 0 || bytes === 0) return;
  const held = await inputBytesHeld(deps, ownerId);
  if (held + bytes <= quota) return;
  throw new UserError("PAYLOAD_TOO_LARGE", new InputBudgetExceeded(held, quota, bytes).message);
}

/** The account's programs and data files, newest first, with its use of the quota. */
export async function listFiles(deps: AppDeps, ownerId: string) {
  const [programs, data, usedBytes] = await Promise.all([
    deps.db.programUpload.findMany({
      where: { ownerId }, orderBy: [{ createdAt: "desc" }, { hash: "asc" }], take: 500,
      select: { hash: true, name: true, size: true, createdAt: true },
    }).then(async (rows) => {
      const kinds = new Map((await deps.db.program.findMany({ where: { hash: { in: rows.map((r) => r.hash) } }, select: { hash: true, kind: true } })).map((p) => [p.hash, p.kind]));
      return rows.map((r) => ({ ...r, kind: kinds.get(r.hash) ?? "js" }));
    }),
    deps.db.dataFile.findMany({
      where: { ownerId }, orderBy: [{ createdAt: "desc" }, { hash: "asc" }], take: 500,
      select: { hash: true, name: true, size: true, createdAt: true },
    }),
    storageUsed(deps, ownerId),
  ]);
  return {
    usedBytes,
    quotaBytes: deps.env.ACCOUNT_STORAGE_BYTES || null,
    /** Stored inputs of the account's jobs (a budget of quotaBytes of their own). */
    inputBytes: await inputBytesHeld(deps, ownerId),
    /** Outputs the account's ended jobs keep, as measured (a third budget of quotaBytes). */
    outputBytes: await outputBytesHeld(deps.db, ownerId),
    files: [
      ...programs.map((p) => ({ ...p, type: "program" as const, kind: p.kind as "js" | "wasm" })),
      ...data.map((d) => ({ ...d, type: "data" as const, kind: null })),
    ]
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || a.hash.localeCompare(b.hash))
      .map((f) => ({ ...f, createdAt: f.createdAt.toISOString() })),
  };
}

function checkHashInput(hash: string) {
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new UserError("BAD_REQUEST", "A file is named by the sha256 of its bytes (64 hex digits).");
}

/**
 * Deletes one of the account's data files: its row, and its bytes unless something else still
 * needs them (see releaseBlob). Jobs already submitted from it keep their own unit inputs.
 */
export async function deleteDataFile(deps: AppDeps, ownerId: string, hash: string) {
  checkHashInput(hash);
  const { count } = await deps.db.dataFile.deleteMany({ where: { hash, ownerId } });
  if (count === 0) throw new UserError("NOT_FOUND", `You have no data file ${hash}.`);
  return { hash, bytesFreed: await releaseBlob(deps, hash) };
}

/**
 * Deletes the account's upload of a program (what its quota counts). While another account
 * has uploaded it too, the program stays for them; the last uploader deletes the program and
 * its bytes, unless a job names it (a job keeps its program: its page, merges and audits read
 * it; anyone holding the hash may have submitted one).
 */
export async function deleteProgram(deps: AppDeps, ownerId: string, hash: string) {
  checkHashInput(hash);
  const mine = await deps.db.programUpload.findUnique({ where: { hash_ownerId: { hash, ownerId } }, select: { hash: true } });
  if (!mine) throw new UserError("NOT_FOUND", `You have no program ${hash}.`);
  if ((await deps.db.programUpload.count({ where: { hash, ownerId: { not: ownerId } } })) > 0) {
    await deps.db.programUpload.deleteMany({ where: { hash, ownerId } });
    return { hash, bytesFreed: 0 };
  }
  const jobs = await deps.db.job.count({ where: { programHash: hash } });
  if (jobs > 0) throw new UserError("CONFLICT", `Program ${hash.slice(0, 12)}… ran ${jobs} job${jobs === 1 ? "" : "s"}, which keep it; it cannot be deleted.`);
  const row = await deps.db.program.findUnique({ where: { hash }, select: { scriptHash: true, sourceMapHash: true } });
  // The job check and the delete are one statement's conditions, so a submission racing this
  // either sees the program gone or keeps it (a foreign key refuses the delete on SQLite).
  const { count } = await deps.db.program.deleteMany({ where: { hash, jobs: { none: {} } } });
  if (row && count === 0) throw new UserError("CONFLICT", `Program ${hash.slice(0, 12)}… is now used by a job; it cannot be deleted.`);
  await deps.db.programUpload.deleteMany({ where: { hash, ownerId } });
  let bytesFreed = 0;
  for (const h of [hash, row?.scriptHash, row?.sourceMapHash]) if (h) bytesFreed += await releaseBlob(deps, h);
  return { hash, bytesFreed };
}

/**
 * Removes a blob's bytes once nothing refers to it, and answers how many bytes that freed.
 * Blobs are content-addressed: the same bytes may be another account's data file, a program
 * or its compiled script, a job's result, an ad's media or a running job's unit input (a shard
 * equal to a whole file). Any of those keeps them. Inputs of finished jobs are not needed again.
 */
export async function releaseBlob(deps: AppDeps, hash: string): Promise<number> {
  if (planned.has(hash)) return 0;
  const db = deps.db;
  const refs = await Promise.all([
    db.dataFile.count({ where: { hash } }),
    db.program.count({ where: { OR: [{ hash }, { scriptHash: hash }, { sourceMapHash: hash }] } }),
    db.job.count({ where: { resultBlob: hash } }),
    db.adCreative.count({ where: { mediaHash: hash } }),
    db.workUnit.count({ where: { job: { state: "running" }, input: { contains: hash } } }),
  ]);
  if (refs.some((n) => n > 0)) return 0;
  return deps.blobs.delete(hash);
}

/**
 * Quotas bound each account, not how many accounts sign up: the disk itself is the last bound.
 * Uploads, submissions that store inputs and the next rounds of iterative jobs stop while the
 * directory store's disk would keep less than UPLOAD_DISK_FLOOR_BYTES free, so the database,
 * its log and the results volunteers send keep room (the admin's disk alert says so). Read at
 * most once a second. Answers why, or null.
 */
const disks = new WeakMap<object, { at: number; free: Promise<number | null> }>();
export async function diskShort(deps: Pick<AppDeps, "env" | "blobs">, bytes: number): Promise<string | null> {
  const floor = deps.env.UPLOAD_DISK_FLOOR_BYTES;
  if (floor === 0 || deps.blobs.kind !== "directory") return null;
  let disk = disks.get(deps);
  if (!disk || Date.now() - disk.at > 1000) {
    disk = { at: Date.now(), free: fs.statfs(deps.env.DATA_DIR).then((s) => s.bavail * s.bsize, () => null) };
    disks.set(deps, disk);
  }
  const free = await disk.free;
  if (free === null || free - bytes >= floor) return null;
  return `The server is short of disk space (${formatBytes(Math.max(0, free))} free); it stores no more uploads, inputs or rounds until its administrator makes room.`;
}

/**
 * Blobs a submission on this node has stored for its units and not yet committed (counted per
 * submission): another submission that fails meanwhile must not remove what this one will use.
 */
const planned = new Map<string, number>();

/** Marks a submission's unit blobs as in use until `done` is called; `done(false)` removes those nothing else needs. */
export function holdPlannedBlobs(deps: AppDeps, units: ReadonlyArray<{ blob?: string } | object>): (committed: boolean) => Promise<void> {
  const hashes = [...new Set(units.flatMap((u) => ("blob" in u && typeof u.blob === "string" ? [u.blob] : [])))];
  for (const h of hashes) planned.set(h, (planned.get(h) ?? 0) + 1);
  let released = false;
  return async (committed) => {
    if (released) return;
    released = true;
    for (const h of hashes) {
      const n = (planned.get(h) ?? 1) - 1;
      if (n > 0) planned.set(h, n);
      else planned.delete(h);
    }
    // A refused submission leaves nothing behind: its chunks were stored before it was refused.
    if (!committed) for (const h of hashes) await releaseBlob(deps, h).catch(() => 0);
  };
}

/** Ended jobs whose inputs one pass of collectJobInputs removes at most. */
const COLLECT_JOBS = 50;
/**
 * A completed job's inputs are kept this long after its end: a host caught cheating later has
 * its results voided and a completed one-shot job runs those units again (backtracking), from
 * its inputs. After it, such a job is not run again (backtrackSql.ts: its caught host's
 * payouts go back to the owner instead). Cancelled and failed jobs never run again.
 */
export const COMPLETED_INPUTS_KEPT_MS = 24 * 3600_000;
/** Hashes per query when looking for other references to them. */
const IN_CHUNK = 500;
/** Units read per page when listing the blobs running jobs read. */
const UNIT_PAGE = 5000;


/**
 * The blobs the units of jobs that may run (again) read: running ones, and completed ones not
 * collected yet, but for `except` (the jobs being collected: a completed one is among them).
 */
async function blobsOfLiveJobs(deps: AppDeps, except: string[]): Promise<Set<string>> {
  const out = new Set<string>();
  let after: string | undefined;
  for (;;) {
    const page = await deps.db.workUnit.findMany({
      where: {
        job: { OR: [{ state: "running" }, { state: "completed", inputBytes: { gt: 0 } }] },
        jobId: { notIn: except }, input: { contains: '"blob"' }, ...(after ? { id: { gt: after } } : {}),
      },
      select: { id: true, input: true }, orderBy: { id: "asc" }, take: UNIT_PAGE,
    });
    for (const u of page) {
      const b = blobOfRow(u.input);
      if (b) out.add(b);
    }
    if (page.length < UNIT_PAGE) return out;
    after = page[page.length - 1]!.id;
  }
}

/**
 * Removes the stored inputs of jobs that have ended (their chunks, shards and large JSON items
 * in blobs, and the inputs in their units' rows) and gives their bytes back to their owners'
 * input budget (Job.inputBytes to 0): what BOINC's file deleter does for finished work units.
 * Cancelled and failed jobs' at once, completed ones' COMPLETED_INPUTS_KEPT_MS after their
 * end. A blob something else still names stays: a unit of a job that may run (the same chunk
 * cut from the same file again), a submission on this node not yet committed, a data file, a
 * program, a job's result or an ad. In a cluster every node runs it; a blob removed twice is
 * removed once. Answers what it did.
 */
export async function collectJobInputs(deps: AppDeps, now = Date.now()): Promise<{ jobs: number; blobs: number; bytes: number }> {
  const ended = await deps.db.job.findMany({
    where: { inputBytes: { gt: 0 }, OR: [{ state: { in: ["cancelled", "failed"] } }, { state: "completed", finishedAt: { lt: new Date(now - COMPLETED_INPUTS_KEPT_MS) } }] },
    select: { id: true }, take: COLLECT_JOBS,
  });
  if (!ended.length) return { jobs: 0, blobs: 0, bytes: 0 };
  return collectInputsOf(deps, ended.map((j) => j.id));
}

/** Removes the stored inputs of these ended jobs (see collectJobInputs). */
export async function collectInputsOf(deps: AppDeps, ids: string[]): Promise<{ jobs: number; blobs: number; bytes: number }> {
  const hashes = await inputBlobsOf(deps, ids);
  // Marked first, each unless it runs again: a backtrack reopens a completed job only while its
  // inputs are kept (backtrackSql.ts), so none marked here runs again without them. (Collected
  // before the mark, a job a backtrack reopened in between ran on without its inputs.)
  const marked = await deps.db.$transaction(async (tx) => {
    const done = (await tx.job.updateManyAndReturn({ where: { id: { in: ids }, state: { not: "running" } }, data: { inputBytes: 0 }, select: { id: true } })).map((j) => j.id);
    // The rows' inputs too: nothing reads an ended job's.
    await tx.workUnit.updateMany({ where: { jobId: { in: done } }, data: { input: "null" } });
    return new Set(done);
  });
  const { blobs, bytes } = await removeInputBlobs(deps, hashes.filter((h) => marked.has(h.jobId)).map((h) => h.hash), [...marked]);
  return { jobs: marked.size, blobs, bytes };
}

/** The blobs these jobs' units read, by job. */
export async function inputBlobsOf(deps: AppDeps, ids: string[]): Promise<Array<{ jobId: string; hash: string }>> {
  const found: Array<{ jobId: string; hash: string }> = [];
  for (const u of await deps.db.workUnit.findMany({ where: { jobId: { in: ids }, input: { contains: '"blob"' } }, select: { jobId: true, input: true } })) {
    const hash = blobOfRow(u.input);
    if (hash) found.push({ jobId: u.jobId, hash });
  }
  return found;
}

/** Removes those of `hashes` (what the ended jobs `ended` stored) that nothing else keeps: no unit of a job that may run reads them, and nothing else names them (deleteUnnamedBlobs). */
export async function removeInputBlobs(deps: AppDeps, hashes: string[], ended: string[]): Promise<{ blobs: number; bytes: number }> {
  let candidates = [...new Set(hashes)];
  if (candidates.length) {
    const live = await blobsOfLiveJobs(deps, ended);
    candidates = candidates.filter((h) => !live.has(h));
  }
  return deleteUnnamedBlobs(deps, candidates);
}

/**
 * Removes those of `candidates` no data file, program, job result or ad names, and none a
 * submission on this node is storing. (A running job's units are the caller's to rule out.)
 */
export async function deleteUnnamedBlobs(deps: AppDeps, candidates: string[]): Promise<{ blobs: number; bytes: number }> {
  const kept = new Set<string>();
  for (let i = 0; i < candidates.length; i += IN_CHUNK) {
    const hs = candidates.slice(i, i + IN_CHUNK);
    const [data, programs, results, ads] = await Promise.all([
      deps.db.dataFile.findMany({ where: { hash: { in: hs } }, select: { hash: true } }),
      deps.db.program.findMany({ where: { OR: [{ hash: { in: hs } }, { scriptHash: { in: hs } }, { sourceMapHash: { in: hs } }] }, select: { hash: true, scriptHash: true, sourceMapHash: true } }),
      deps.db.job.findMany({ where: { resultBlob: { in: hs } }, select: { resultBlob: true } }),
      deps.db.adCreative.findMany({ where: { mediaHash: { in: hs } }, select: { mediaHash: true } }),
    ]);
    for (const r of data) kept.add(r.hash);
    for (const p of programs) for (const h of [p.hash, p.scriptHash, p.sourceMapHash]) if (h) kept.add(h);
    for (const r of results) if (r.resultBlob) kept.add(r.resultBlob);
    for (const r of ads) if (r.mediaHash) kept.add(r.mediaHash);
  }
  let blobs = 0;
  let bytes = 0;
  for (const h of candidates) {
    // Checked last, just before the removal: a submission may have stored the same chunk meanwhile.
    if (kept.has(h) || planned.has(h)) continue;
    const freed = await deps.blobs.delete(h);
    if (freed > 0) blobs++, (bytes += freed);
  }
  return { blobs, bytes };
}
