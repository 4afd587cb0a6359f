import fs from "node:fs/promises";
import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { formatBytes } from "../../http/body";

/**
 * What an account keeps in the blob store (its programs and data files), against
 * ACCOUNT_STORAGE_BYTES. Without a bound, one free account uploading 64 MiB files in a loop
 * fills the server's disk. Job outputs are not counted: they are paid for in credits.
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
