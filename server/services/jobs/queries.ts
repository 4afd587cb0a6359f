import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { jobRounds, lastRound, maxRoundsOf } from "./rounds";
import { programJobError } from "../programs/programErrors";

export interface Viewer {
  id: string;
  role: string;
}

const jobColumns = {
  id: true, ownerId: true, kernel: true, params: true, chunks: true, state: true, price: true, estimate: true,
  cost: true, unitsDone: true, error: true, createdAt: true, finishedAt: true,
  replicas: true, quorum: true, maxReplicas: true, adaptive: true, tolerance: true, stopAfterRound: true,
} as const;

/** The row, if the viewer may see it: someone else's job reads as missing, so job ids can't be probed; so does a deleted one. */
export function visibleJob<T extends { ownerId: string; deletedAt: Date | null }>(row: T | null, viewer: Viewer, jobId: string): T {
  if (!row || row.deletedAt || (row.ownerId !== viewer.id && viewer.role !== "admin")) throw new UserError("NOT_FOUND", `No job ${jobId}.`);
  return row;
}

export async function ownedJob(deps: AppDeps, viewer: Viewer, jobId: string) {
  const { deletedAt: _d, ...job } = visibleJob(await deps.db.job.findUnique({ where: { id: jobId }, select: { ...jobColumns, deletedAt: true } }), viewer, jobId);
  return job;
}

/**
 * A job with live progress from the coordinator while it runs, else from the database.
 * `roundsAfter`: of an iterative job's rounds, only those after that one (a watcher that has
 * the others). At most ROUNDS_PER_READ rounds come at once (`roundsMore` says if more follow).
 */
export async function getJob(deps: AppDeps, viewer: Viewer, jobId: string, opts: { roundsAfter?: number } = {}) {
  const job = await ownedJob(deps, viewer, jobId);
  // In a cluster this node may hold some of the job's slices, or none: the job's progress is the database's.
  // An ended job's figures are the database's too: the coordinator lets go of a job only after
  // its end is committed, and a read in between saw "completed" with nothing running (no rate).
  const live = job.state !== "running" ? undefined : deps.cluster.mode === "cluster" ? await clusterProgress(deps, job) : deps.coordinator.progress(jobId);
  const durationMs = (job.finishedAt ?? new Date()).getTime() - job.createdAt.getTime();
  const [{ states, base, work }, { rounds, more }, latest] = await Promise.all([
    resultAggregates(deps, job),
    jobRounds(deps.db, jobId, opts.roundsAfter),
    opts.roundsAfter === undefined ? undefined : lastRound(deps.db, jobId),
  ]);
  // The current (or last) round, numbered from 1: also the count of rounds so far.
  const round = latest !== undefined ? latest : more ? await lastRound(deps.db, jobId) : (rounds.at(-1)?.round ?? null);
  // An iterative job's progress is its current round's: every round before it is done.
  const progress = live ?? {
    total: job.chunks, done: job.unitsDone - job.chunks * Math.max(0, (round ?? 0) - 1), queued: 0, running: 0,
    // Ended: units (of every round) over the time from submission to the end.
    throughput: job.state === "running" || durationMs <= 0 || job.unitsDone === 0 ? null : job.unitsDone / (durationMs / 1000),
    etaSeconds: job.state === "running" ? null : 0, waiting: null,
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
    // Nothing paid (the owner's own machines computed it): no overhead to speak of.
    overhead: baseCost && job.cost ? job.cost / baseCost : null,
    // The database is the truth about endings; the live view can be a few ms ahead of it.
    state: job.state,
    /** The viewer submitted it (an admin may look at others' jobs, but not act for their owner). */
    ownedByViewer: job.ownerId === viewer.id,
    /** What a person is told: a running job that no volunteer computes right now is "queued". */
    status: displayStatus(job.state, live),
    error: await shownError(deps, job),
    params: JSON.parse(job.params) as Record<string, unknown>,
    /** Estimated vs measured reference CPU-ms of the valid results, and the effective price. */
    work: { ...work, effectivePrice: work.measuredMs > 0 ? job.cost / (work.measuredMs / 1000) : null },
    /** Iterative jobs: the current (or last) round, the most rounds, and each round so far (after `roundsAfter`, if given). */
    round,
    maxRounds: maxRoundsOf(job.kernel, job.params),
    rounds,
    roundsAfter: opts.roundsAfter ?? null,
    /** More rounds follow the last of `rounds` (at most ROUNDS_PER_READ come at once): ask again with `roundsAfter`. */
    roundsMore: more,
    progress: {
      total: progress.total, done: progress.done, queued: progress.queued, running: progress.running,
      /** Units per second: recent while the job runs (null while nothing computes it), overall once it ended. */
      throughput: progress.throughput, etaSeconds: progress.etaSeconds,
      /** Results that wait for a copy no volunteer online may compute (one from another account). */
      waiting: progress.waiting,
    },
    durationMs,
  };
}

/**
 * A running job with this many units done has its result aggregates reused for up to
 * AGGREGATES_MAX_AGE_MS: they read every result (~3 ms per 1,000 on SQLite; a 10,000-unit job
 * 24-37 ms a look) and a watcher looks five times a second. Its progress stays live.
 */
const AGGREGATES_CACHED_FROM_UNITS = 1000;
const AGGREGATES_MAX_AGE_MS = 1000;
type ResultAggregates = {
  states: Array<{ state: string; _count: { _all: number } }>;
  base: { _sum: { pay: number | null } };
  work: Awaited<ReturnType<typeof jobWork>>;
};
const recentAggregates = new Map<string, { at: number; value: Promise<ResultAggregates> }>();

function resultAggregates(deps: AppDeps, job: { id: string; state: string; unitsDone: number }): Promise<ResultAggregates> {
  const jobId = job.id;
  const read = async (): Promise<ResultAggregates> => {
    const [states, base, work] = await Promise.all([
      deps.db.result.groupBy({ by: ["state"], where: { jobId }, _count: { _all: true } }),
      deps.db.workUnit.aggregate({ where: { jobId, done: true }, _sum: { pay: true } }),
      jobWork(deps, jobId),
    ]);
    return { states, base, work };
  };
  if (job.state !== "running" || job.unitsDone < AGGREGATES_CACHED_FROM_UNITS) return read();
  const now = Date.now();
  const hit = recentAggregates.get(jobId);
  if (hit && now - hit.at < AGGREGATES_MAX_AGE_MS) return hit.value;
  // Old entries go when the map grows: at most a second's worth of large running jobs stay.
  if (recentAggregates.size >= 256) for (const [id, e] of recentAggregates) if (now - e.at >= AGGREGATES_MAX_AGE_MS) recentAggregates.delete(id);
  const value = read();
  recentAggregates.set(jobId, { at: now, value });
  value.catch(() => recentAggregates.get(jobId)?.value === value && recentAggregates.delete(jobId));
  return value;
}

export async function listJobs(deps: AppDeps, viewer: Viewer, opts: { limit: number }) {
  const jobs = await deps.db.job.findMany({
    where: { ownerId: viewer.id, deletedAt: null },
    select: { ...jobColumns, _count: { select: { rounds: true } } },
    // Jobs of the same millisecond by id (cuids grow): PostgreSQL keeps no insertion order for ties.
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: opts.limit,
  });
  // An iterative job counts its current round's units (the rounds before it are all done).
  return Promise.all(jobs.map(async ({ tolerance: _t, _count, ...j }) => {
    const live = deps.cluster.mode === "cluster" ? await clusterProgress(deps, j) : deps.coordinator.progress(j.id);
    return {
      ...j, params: JSON.parse(j.params) as Record<string, unknown>, status: displayStatus(j.state, live),
      done: live?.done ?? j.unitsDone - j.chunks * Math.max(0, _count.rounds - 1),
      error: await shownError(deps, j),
    };
  }));
}

/** A job's error as people see it: a program's names the place in the uploaded file. */
function shownError(deps: AppDeps, job: { id: string; kernel: string; error: string | null }) {
  return job.error && job.kernel === "program" ? programJobError(deps, job.id, job.error) : job.error;
}

/** A running job that no volunteer computes right now reads "queued"; an ended one, its state. */
/** How a running job's progress looks from any node of a cluster (undefined once it ended). */
async function clusterProgress(deps: AppDeps, job: { id: string; state: string; chunks: number; unitsDone: number }) {
  if (job.state !== "running") return undefined;
  const local = deps.coordinator.progress(job.id);
  const now = Date.now();
  const [held, recent, rounds] = await Promise.all([
    deps.db.slice.count({ where: { jobId: job.id, done: false, leaseUntil: { gt: new Date(now) } } }),
    // Units every node validated over the last 10 s: the cluster's throughput, not this node's.
    deps.db.workUnit.count({ where: { jobId: job.id, done: true, completedAt: { gte: new Date(now - 10_000) } } }),
    deps.db.jobRound.count({ where: { jobId: job.id } }),
  ]);
  const done = job.unitsDone - job.chunks * Math.max(0, rounds - 1);
  const throughput = held > 0 && recent > 0 ? recent / 10 : null;
  const left = job.chunks - done;
  return {
    total: job.chunks, done, queued: Math.max(0, left - (local?.running ?? 0)),
    // Instances running on this node; how many elsewhere, only those nodes know.
    running: local?.running ?? 0,
    /** A node holds a slice of it: it is being computed somewhere. */
    computing: held > 0,
    throughput, etaSeconds: left === 0 ? 0 : throughput ? left / throughput : null, waiting: local?.waiting ?? null,
  };
}

function displayStatus(state: string, live: { running: number; computing?: boolean } | undefined): string {
  return state === "running" && !(live && (live.running > 0 || live.computing)) ? "queued" : state;
}

/** The job, which must still run; with `ownerOnly`, only its owner may act on it (not an admin). */
async function runningJob(deps: AppDeps, viewer: Viewer, jobId: string, ownerOnly?: string) {
  const job = await ownedJob(deps, viewer, jobId);
  if (ownerOnly && job.ownerId !== viewer.id) throw new UserError("FORBIDDEN", `Only the job's owner may ${ownerOnly}.`);
  if (job.state !== "running") throw new UserError("CONFLICT", `Job ${jobId} has already ended (${job.state}).`);
  return job;
}

export async function cancelJob(deps: AppDeps, viewer: Viewer, jobId: string) {
  await runningJob(deps, viewer, jobId);
  const ended = await deps.coordinator.cancelJob(jobId);
  // Wherever its units are being computed.
  deps.cluster.bus.publish("cancel", jobId);
  if (ended) return getJob(deps, viewer, jobId);
  // Its last units were decided as the cancel came: it completes (or fails), and is charged as
  // such. Said so, rather than a 200 whose job reads "running" and then completes.
  await deps.coordinator.drain();
  const job = await getJob(deps, viewer, jobId);
  if (job.state === "cancelled") return job;
  throw new UserError("CONFLICT", job.state === "running"
    ? `Job ${jobId} could not be cancelled: its last units were done as the cancel came, and it is completing.`
    : `Job ${jobId} could not be cancelled: it ${job.state} first.`);
}

/**
 * The owner ends an iterative job after the round in progress: its step still runs on that
 * round's outputs, and the job's result is the step's (its state, unless the step said done).
 * Kept on the job's row, so it holds on whichever node ends the round, and after a restart.
 */
export async function stopAfterRound(deps: AppDeps, viewer: Viewer, jobId: string) {
  const job = await runningJob(deps, viewer, jobId, "stop it");
  if (maxRoundsOf(job.kernel, job.params) === null) throw new UserError("BAD_REQUEST", `Job ${jobId} does not run in rounds: cancel it instead.`);
  await deps.db.job.updateMany({ where: { id: jobId, state: "running" }, data: { stopAfterRound: true } });
  return getJob(deps, viewer, jobId);
}

/**
 * The owner takes the results that wait for a quorum as they are (see
 * Coordinator.acceptUnconfirmed): for a job whose confirming volunteers are not coming.
 */
export async function acceptUnconfirmed(deps: AppDeps, viewer: Viewer, jobId: string) {
  await runningJob(deps, viewer, jobId, "accept its unconfirmed results");
  const accepted = deps.coordinator.acceptUnconfirmed(jobId);
  // In a cluster, the nodes that hold its other slices do the same for theirs.
  deps.cluster.bus.publish("accept-unconfirmed", jobId);
  await deps.coordinator.drain();
  return { accepted, job: await getJob(deps, viewer, jobId) };
}

/** The owner changes how many copies of each unit the running job needs (and how many must agree). */
export async function setReplication(deps: AppDeps, viewer: Viewer, input: { id: string; replicas: number; quorum?: number }) {
  const job = await runningJob(deps, viewer, input.id, "change its replication");
  const quorum = input.quorum ?? input.replicas;
  if (quorum > input.replicas) throw new UserError("BAD_REQUEST", `The quorum (${quorum}) cannot exceed the copies per unit (${input.replicas}).`);
  if (input.replicas > job.replicas) {
    // More copies than the escrow was sized for could run out of it.
    throw new UserError("BAD_REQUEST", `A running job's replication can only be lowered (it has ${job.replicas} copies per unit).`);
  }
  if (quorum > job.quorum) {
    // The escrow pays `quorum` results a unit: a higher one would be paid partly out of nothing.
    throw new UserError("BAD_REQUEST", `A running job's quorum can only be lowered (it has a quorum of ${job.quorum}).`);
  }
  const decided = await deps.coordinator.setReplication(input.id, input.replicas, quorum);
  deps.cluster.bus.publish("set-replication", { jobId: input.id, replicas: input.replicas, quorum });
  await deps.coordinator.drain();
  return { decided, job: await getJob(deps, viewer, input.id) };
}

/** Each validated unit's output, in unit order (units still running are left out). */
/**
 * The job's work in reference CPU-ms over its valid results: estimated (each result counts
 * its unit's `work`), and measured (the hosts' reported CPU time × their benchmark score)
 * with the estimate of the same measured results, so the two compare like for like.
 */
export async function jobWork(deps: AppDeps, jobId: string) {
  // One statement for both engines: quoted names (PostgreSQL folds unquoted ones to lower
  // case), and every aggregate cast to a double, which both read as a plain number (PostgreSQL's
  // COUNT and SUM of an integer are bigint).
  const [row] = await deps.db.$queryRaw<Array<{ results: number; estimatedMs: number | null; measured: number; measuredMs: number | null; estimatedMeasuredMs: number | null }>>`
    SELECT CAST(COUNT(*) AS DOUBLE PRECISION) AS "results",
           CAST(SUM(u."work") AS DOUBLE PRECISION) AS "estimatedMs",
           CAST(COUNT(r."workMs") AS DOUBLE PRECISION) AS "measured",
           CAST(SUM(r."workMs") AS DOUBLE PRECISION) AS "measuredMs",
           CAST(SUM(CASE WHEN r."workMs" IS NULL THEN 0 ELSE u."work" END) AS DOUBLE PRECISION) AS "estimatedMeasuredMs"
    FROM "Result" r JOIN "WorkUnit" u ON u."id" = r."unitId"
    WHERE r."jobId" = ${jobId} AND r."state" = 'valid'`;
  return {
    validResults: Number(row?.results ?? 0),
    estimatedMs: Number(row?.estimatedMs ?? 0),
    measuredResults: Number(row?.measured ?? 0),
    measuredMs: Number(row?.measuredMs ?? 0),
    estimatedMeasuredMs: Number(row?.estimatedMeasuredMs ?? 0),
  };
}
