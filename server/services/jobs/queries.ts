import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { jobRounds, maxRoundsOf } from "./rounds";
import { programJobError } from "../programs/programErrors";

export interface Viewer {
  id: string;
  role: string;
}

const jobColumns = {
  id: true, ownerId: true, kernel: true, params: true, chunks: true, state: true, price: true, estimate: true,
  cost: true, unitsDone: true, error: true, createdAt: true, finishedAt: true,
  replicas: true, quorum: true, maxReplicas: true, adaptive: true, tolerance: true,
} as const;

async function ownedJob(deps: AppDeps, viewer: Viewer, jobId: string) {
  const job = await deps.db.job.findUnique({ where: { id: jobId }, select: jobColumns });
  // Someone else's job reads as missing, so job ids can't be probed.
  if (!job || (job.ownerId !== viewer.id && viewer.role !== "admin")) throw new UserError("NOT_FOUND", `No job ${jobId}.`);
  return job;
}

/** A job with live progress from the coordinator while it runs, else from the database. */
export async function getJob(deps: AppDeps, viewer: Viewer, jobId: string) {
  const job = await ownedJob(deps, viewer, jobId);
  const live = deps.coordinator.progress(jobId);
  const durationMs = (job.finishedAt ?? new Date()).getTime() - job.createdAt.getTime();
  const [states, base, rounds, work] = await Promise.all([
    deps.db.result.groupBy({ by: ["state"], where: { jobId }, _count: { _all: true } }),
    deps.db.workUnit.aggregate({ where: { jobId, done: true }, _sum: { pay: true } }),
    jobRounds(deps.db, jobId),
    jobWork(deps, jobId),
  ]);
  // An iterative job's progress is its current round's: every round before it is done.
  const progress = live ?? {
    total: job.chunks, done: job.unitsDone - job.chunks * Math.max(0, rounds.length - 1), queued: 0, running: 0, throughput: 0,
    etaSeconds: job.state === "running" ? null : 0,
  };
  const count = (state: string) => states.find((s) => s.state === state)?._count._all ?? 0;
  const { replicas, quorum, maxReplicas, adaptive, tolerance, ...rest } = job;
  const baseCost = base._sum.pay ?? 0;
  return {
    ...rest,
    replication: { replicas, quorum, maxReplicas, adaptive, tolerance: tolerance ? (JSON.parse(tolerance) as { relative: number; absolute: number }) : null },
    results: { valid: count("valid"), invalid: count("invalid"), errors: count("error"), pending: count("pending") },
    /** What the validated units would cost computed once; cost / baseCost is the replication overhead. */
    baseCost,
    overhead: baseCost ? job.cost / baseCost : null,
    // The database is the truth about endings; the live view can be a few ms ahead of it.
    state: job.state,
    // A program's error says where in the uploaded file it happened.
    error: job.error && job.kernel === "program" ? await programJobError(deps, job.id, job.error) : job.error,
    params: JSON.parse(job.params) as Record<string, unknown>,
    /** Estimated vs measured reference CPU-ms of the valid results, and the effective price. */
    work: { ...work, effectivePrice: work.measuredMs > 0 ? job.cost / (work.measuredMs / 1000) : null },
    /** Iterative jobs: the current (or last) round, the most rounds, and each round so far. */
    round: rounds.at(-1)?.round ?? null,
    maxRounds: maxRoundsOf(job.kernel, job.params),
    rounds,
    progress: { total: progress.total, done: progress.done, queued: progress.queued, running: progress.running, throughput: progress.throughput, etaSeconds: progress.etaSeconds },
    durationMs,
  };
}

export async function listJobs(deps: AppDeps, viewer: Viewer, opts: { limit: number }) {
  const jobs = await deps.db.job.findMany({
    where: { ownerId: viewer.id },
    select: { ...jobColumns, _count: { select: { rounds: true } } },
    orderBy: { createdAt: "desc" },
    take: opts.limit,
  });
  // An iterative job counts its current round's units (the rounds before it are all done).
  return jobs.map(({ tolerance: _t, _count, ...j }) => ({
    ...j, params: JSON.parse(j.params) as Record<string, unknown>,
    done: deps.coordinator.progress(j.id)?.done ?? j.unitsDone - j.chunks * Math.max(0, _count.rounds - 1),
  }));
}

/** The merged result as JSON text, or null while the job has none. */
export async function jobResultJson(deps: AppDeps, viewer: Viewer, jobId: string): Promise<string | null> {
  await ownedJob(deps, viewer, jobId);
  const row = await deps.db.job.findUnique({ where: { id: jobId }, select: { result: true, resultBlob: true } });
  if (row?.result) return row.result;
  if (row?.resultBlob) return (await deps.blobs.get(row.resultBlob)).toString("utf8");
  return null;
}

export async function cancelJob(deps: AppDeps, viewer: Viewer, jobId: string) {
  const job = await ownedJob(deps, viewer, jobId);
  if (job.state !== "running") throw new UserError("CONFLICT", `Job ${jobId} has already ended (${job.state}).`);
  await deps.coordinator.cancelJob(jobId);
  return getJob(deps, viewer, jobId);
}

/** Each validated unit's output, in unit order (units still running are left out). */
export async function unitOutputs(deps: AppDeps, viewer: Viewer, jobId: string) {
  await ownedJob(deps, viewer, jobId);
  const units = await deps.db.workUnit.findMany({ where: { jobId, done: true }, select: { idx: true, round: true, output: true }, orderBy: [{ round: "asc" }, { idx: "asc" }] });
  return units.map((u) => ({ index: u.idx, ...(u.round ? { round: u.round } : {}), output: JSON.parse(u.output!) as unknown }));
}

/**
 * The job's work in reference CPU-ms over its valid results: estimated (each result counts
 * its unit's `work`), and measured (the hosts' reported CPU time × their benchmark score)
 * with the estimate of the same measured results, so the two compare like for like.
 */
export async function jobWork(deps: AppDeps, jobId: string) {
  const [row] = await deps.db.$queryRaw<Array<{ results: bigint | number; estimatedMs: number | null; measured: bigint | number; measuredMs: number | null; estimatedMeasuredMs: number | null }>>`
    SELECT COUNT(*) AS results, SUM(u.work) AS estimatedMs, COUNT(r.workMs) AS measured, SUM(r.workMs) AS measuredMs,
           SUM(CASE WHEN r.workMs IS NULL THEN 0 ELSE u.work END) AS estimatedMeasuredMs
    FROM "Result" r JOIN "WorkUnit" u ON u.id = r.unitId
    WHERE r.jobId = ${jobId} AND r.state = 'valid'`;
  return {
    validResults: Number(row?.results ?? 0),
    estimatedMs: Number(row?.estimatedMs ?? 0),
    measuredResults: Number(row?.measured ?? 0),
    measuredMs: Number(row?.measuredMs ?? 0),
    estimatedMeasuredMs: Number(row?.estimatedMeasuredMs ?? 0),
  };
}
