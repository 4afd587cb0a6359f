import type { AppDeps } from "../deps";
import type { Db } from "../../store/prisma";
import { UserError } from "../errors";
import { formatBytes } from "../../http/body";
import { databaseKind } from "../../store/databaseUrl";

/**
 * What program jobs' outputs take on the server: their results' outputs, their units'
 * canonical outputs, an iterative job's rounds' states and their merged result. Counted while
 * a job runs by the coordinator (coordinator/outputBudget.ts), measured here once it has ended
 * (Job.outputBytes), and held against ACCOUNT_STORAGE_BYTES per account, a budget apart from
 * files' and inputs'.
 */

/** Ended program jobs one pass of measureEndedJobs measures at most. */
const MEASURE_JOBS = 50;
/** Job.outputBytes is a 32-bit integer on PostgreSQL. */
const MAX_COUNT = 2 ** 31 - 1;

/** Bytes of outputs the account's ended jobs keep, as measured. */
export async function outputBytesHeld(db: Db, ownerId: string): Promise<number> {
  const r = await db.job.aggregate({ where: { ownerId, outputBytes: { gt: 0 } }, _sum: { outputBytes: true } });
  return r._sum.outputBytes ?? 0;
}

/** For the coordinator's count (outputBudget.ts): what is held, and which of `ended` are measured or deleted. */
export async function outputsSettled(db: Db, ownerId: string, ended: string[]): Promise<{ bytes: number; settled: string[] }> {
  const [bytes, unmeasured] = await Promise.all([
    outputBytesHeld(db, ownerId),
    ended.length ? db.job.findMany({ where: { id: { in: ended }, outputBytes: -1 }, select: { id: true } }) : [],
  ]);
  const waiting = new Set(unmeasured.map((j) => j.id));
  return { bytes, settled: ended.filter((id) => !waiting.has(id)) };
}

/** Bytes of what the job keeps: its results', its units' and its merged outputs, its rounds' states, and its params. */
export async function measureJobOutputs(deps: AppDeps, jobId: string): Promise<number> {
  const pg = databaseKind(deps.env.DATABASE_URL) === "postgres";
  // Both engines have it; SQLite answers it from the record header, without reading the text.
  const len = (column: string) => `OCTET_LENGTH("${column}")`;
  const sum = (table: string, bytes: string) =>
    `SELECT COALESCE(SUM(${bytes}), 0) AS n FROM "${table}" WHERE "jobId" = ${pg ? "$1" : "?"}`;
  const sums = await Promise.all(
    [
      sum("Result", len("output")), sum("WorkUnit", len("output")), sum("JobRound", `${len("state")} + COALESCE(${len("next")}, 0)`),
      // Its params too (up to a request's megabyte, kept with the job: a loop of submissions
      // cancelled at once kept 126 MB of them, counted nowhere).
      `SELECT ${len("params")} AS n FROM "Job" WHERE "id" = ${pg ? "$1" : "?"}`,
    ].map((sql) => deps.db.$queryRawUnsafe<Array<{ n: unknown }>>(sql, jobId)),
  );
  const job = await deps.db.job.findUnique({ where: { id: jobId }, select: { result: true, resultBlob: true } });
  let merged = job?.result ? Buffer.byteLength(job.result) : 0;
  if (job?.resultBlob) {
    const opened = await deps.blobs.open(job.resultBlob).catch(() => undefined);
    if (opened) {
      opened.stream.destroy();
      merged += opened.bytes;
    }
  }
  return sums.reduce((n, rows) => n + Number(rows[0]?.n ?? 0), merged);
}

/**
 * Empties the outputs of an ended job's results that did not count (outvoted, or still waiting
 * for a quorum when it ended): nothing reads them again (a backtrack reopens valid ones only),
 * and kept, a stranger's answers of garbage to a victim's units stayed in the victim's account.
 * Unless a backtrack reopened the job meanwhile: its results wait for a quorum again.
 */
async function emptyUndecidedResults(deps: AppDeps, jobId: string): Promise<void> {
  const pg = databaseKind(deps.env.DATABASE_URL) === "postgres";
  const [a, b] = pg ? ["$1", "$2"] : ["?", "?"];
  await deps.db.$executeRawUnsafe(
    `UPDATE "Result" SET "output" = NULL WHERE "jobId" = ${a} AND "state" <> 'valid' AND "output" IS NOT NULL
      AND EXISTS (SELECT 1 FROM "Job" WHERE "id" = ${b} AND "state" <> 'running')`,
    jobId, jobId,
  );
}

/** Measures the outputs of program jobs that have ended since the last pass; answers how many it measured. */
export async function measureEndedJobs(deps: AppDeps, ownerId?: string, limit = MEASURE_JOBS): Promise<number> {
  const ended = await deps.db.job.findMany({
    where: { outputBytes: -1, state: { not: "running" }, ...(ownerId ? { ownerId } : {}) },
    select: { id: true }, orderBy: { finishedAt: "asc" }, take: limit,
  });
  for (const { id } of ended) {
    await emptyUndecidedResults(deps, id);
    const bytes = Math.min(MAX_COUNT, await measureJobOutputs(deps, id));
    // Unless a backtrack reopened it meanwhile: it is measured again when it ends again.
    await deps.db.job.updateMany({ where: { id, outputBytes: -1, state: { not: "running" } }, data: { outputBytes: bytes } });
  }
  return ended.length;
}

/**
 * Refuses (413) a program job while the outputs the account's ended jobs keep fill its budget:
 * they are freed by deleting jobs (jobs.delete). A running job that takes the account past it
 * fails (outputBudget.ts).
 */
export async function checkOutputRoom(deps: AppDeps, ownerId: string): Promise<void> {
  const quota = deps.env.ACCOUNT_STORAGE_BYTES;
  if (quota === 0) return;
  // The account's jobs that ended since the last pass are measured now: counted nowhere until
  // then, jobs ended back to back stored 144 times the budget before the pass caught up.
  if ((await measureEndedJobs(deps, ownerId, 2 * MEASURE_JOBS)) === 2 * MEASURE_JOBS) {
    throw new UserError("TOO_MANY_REQUESTS", "Your jobs that ended lately are still being measured for the storage they take; submit again in a minute.");
  }
  const held = await outputBytesHeld(deps.db, ownerId);
  if (held < quota) return;
  throw new UserError(
    "PAYLOAD_TOO_LARGE",
    `Your jobs' outputs take ${formatBytes(held)} of your ${formatBytes(quota)}. ` +
      "Delete jobs you no longer need (the Delete button on a job's page, or `tabgrid job ID --delete`) to submit more.",
  );
}
