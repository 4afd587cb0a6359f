import { LRUCache } from "lru-cache";
import { getKernel } from "../../../worker/kernels";
import type { Kernel, RoundRecord } from "../../../worker/kernels/types";
import type { BlobStore } from "../../store/blobs";
import { hotStore } from "../../store/hotStore";
import type { Db } from "../../store/prisma";
import type { Tx } from "../credits/ledger";
import { runProgramStep, type ProgramStep } from "../programs/programStep";
import { storedResult } from "./merge";
import { SPENT_STATE_JSON, type RoundOp } from "./batchSql";

// Iterative jobs (kernels with `rounds`): each round is a set of WorkUnit rows of the job
// with that round number, and a JobRound row with the state its units start from. The
// coordinator runs a round as a scheduler job of its own (roundJobId); when every unit is
// validated, completeRound steps the state and either creates the next round or ends the job.


/** The units a round needs before it closes, with a round share below 1 (at least one). */
export function roundQuorum(units: number, share: number): number {
  return Math.max(1, Math.ceil(share * units - 1e-9));
}

/** The scheduler's id for one round of an iterative job. */
export function roundJobId(jobId: string, round: number): string {
  return `${jobId}~r${round}`;
}

/** A work unit's id: `${jobId}.${idx}` for one-shot jobs, `${jobId}.r${round}.${idx}` for rounds. */
export function roundUnitId(jobId: string, round: number, idx: number): string {
  return round ? `${jobId}.r${round}.${idx}` : `${jobId}.${idx}`;
}

/** The first round of an iterative kernel's job: its initial state and unit inputs. */
export function firstRound(kernel: Kernel, params: unknown, chunks: number) {
  const rounds = kernel.rounds;
  if (!rounds) return undefined;
  const state = rounds.init(params) as unknown;
  return { state, maxRounds: rounds.maxRounds(params), units: rounds.splitRound(params, state, chunks) };
}

/** Records the start of a round, in the transaction that creates its units. */
export async function startRound(tx: Tx, jobId: string, round: number, state: unknown, startedAt = new Date()) {
  await tx.jobRound.create({ data: { jobId, round, state: JSON.stringify(state), startedAt }, select: { jobId: true } });
}

/** The round a running job is in: its last started round, or 0 for a one-shot job. */
export async function currentRound(db: Db, jobId: string): Promise<number> {
  const row = await db.jobRound.findFirst({ where: { jobId }, orderBy: { round: "desc" }, select: { round: true } });
  return row?.round ?? 0;
}

export type RoundOutcome =
  /** The next round's units are stored: run them. */
  | { kind: "next"; round: number; units: Array<{ id: string; index: number; input: unknown; work: number; pay: number }> }
  /** The job converged or ran out of rounds: its result. */
  | { kind: "done"; result: string | null; resultBlob: string | null }
  | { kind: "failed"; error: string };

function history(rows: Array<{ round: number; metric: number | null; latencyMs: number | null; stats: string | null }>): RoundRecord[] {
  return rows.map((r) => ({ round: r.round, metric: r.metric, latencyMs: r.latencyMs, ...(r.stats ? { stats: JSON.parse(r.stats) as Record<string, number> } : {}) }));
}

/**
 * Every unit of `round` is validated (and committed): runs the kernel's step on their
 * outputs, records the round, and stores the next round's units, all in one transaction, or
 * computes the job's result. Safe to call again for a round already stepped (after a
 * restart): the stored step is reused.
 */
export async function completeRound(deps: { db: Db; blobs: BlobStore }, jobId: string, round: number, signal?: AbortSignal): Promise<RoundOutcome> {
  const { db } = deps;
  const job = await db.job.findUniqueOrThrow({ where: { id: jobId }, select: { kernel: true, ...programJobColumns } });
  if (job.kernel === "program") return completeProgramRound(deps, jobId, round, job, signal);
  const rounds = getKernel(job.kernel)?.rounds;
  if (!rounds) return { kind: "failed", error: `kernel ${job.kernel} does not run in rounds` };
  const params = JSON.parse(job.params) as unknown;
  const row = await db.jobRound.findUnique({ where: { jobId_round: { jobId, round } } });
  if (!row) return { kind: "failed", error: `round ${round} was never started` };

  let next: unknown;
  if (row.finishedAt) {
    if (!row.done) return nextRound(db, jobId, round + 1);
    next = JSON.parse(row.next!);
  } else {
    const stop = job.stopAfterRound;
    const units = await db.workUnit.findMany({ where: { jobId, round }, select: { idx: true, output: true, done: true, pay: true }, orderBy: { idx: "asc" } });
    if (!units.length || units.some((u) => !u.done)) return { kind: "failed", error: `round ${round} ended before every unit had a validated result` };
    let step: ReturnType<typeof rounds.step>;
    let inputs: ReturnType<typeof rounds.splitRound> = [];
    try {
      step = rounds.step(params, JSON.parse(row.state), units.map((u) => JSON.parse(u.output!) as unknown), round);
      if (!step.done && !stop && round < rounds.maxRounds(params)) inputs = rounds.splitRound(params, step.state, units.length);
    } catch (e) {
      return { kind: "failed", error: `Round ${round} could not be completed: ${(e as Error).message}` };
    }
    const done = inputs.length === 0;
    // Later rounds are paid as the first was, so the escrow (rounds × first round) covers them.
    if (!done && inputs.length !== units.length) return { kind: "failed", error: `round ${round + 1} split into ${inputs.length} units, not ${units.length}` };
    await storeStep(db, jobId, round, row.startedAt, {
      done, next: step.state, metric: step.metric, stats: step.stats, state: step.state,
      inputs: inputs.map((u, idx) => ({ ...u, pay: units[idx].pay })),
    });
    if (!done) return nextRound(db, jobId, round + 1);
    next = step.state;
  }

  const rows = await db.jobRound.findMany({ where: { jobId }, select: { round: true, metric: true, latencyMs: true, stats: true }, orderBy: { round: "asc" } });
  let json: string;
  try {
    json = JSON.stringify(rounds.finish(params, next, history(rows)) ?? null);
  } catch (e) {
    return { kind: "failed", error: `Could not make the result: ${(e as Error).message}` };
  }
  return { kind: "done", ...(await storedResult(deps.blobs, json)) };
}

/**
 * Records a finished round and, unless it ended the job, the next round's units and its
 * start, in one transaction. A round already recorded (a second call after a restart)
 * changes nothing. Its row keeps neither the state it started from nor, unless it ended the
 * job, its step (SPENT_STATE): the next round's row holds what comes next.
 */
async function storeStep(
  db: Db, jobId: string, round: number, startedAt: Date,
  step: { done: boolean; next: unknown; metric: number | null; stats?: Record<string, number>; state: unknown; inputs: Array<{ input: unknown; work: number; pay: number }> },
) {
  const finishedAt = new Date();
  await db.$transaction(async (tx) => {
    const { count } = await tx.jobRound.updateMany({
      where: { jobId, round, finishedAt: null },
      data: {
        finishedAt, latencyMs: finishedAt.getTime() - startedAt.getTime(), done: step.done, next: step.done ? JSON.stringify(step.next) : null, state: SPENT_STATE_JSON,
        metric: step.metric !== null && Number.isFinite(step.metric) ? step.metric : null, stats: step.stats ? JSON.stringify(step.stats) : null,
      },
    });
    if (count === 0 || step.done) return;
    // Its units' inputs too, as the group commit's storeRound does (batchSql.ts, spentInputsSql).
    await tx.workUnit.updateMany({ where: { jobId, round }, data: { input: SPENT_STATE_JSON } });
    await tx.workUnit.createMany({
      data: step.inputs.map((u, idx) => ({
        id: roundUnitId(jobId, round + 1, idx), jobId, round: round + 1, idx, input: JSON.stringify(u.input), work: Math.round(u.work), pay: u.pay,
      })),
    });
    await startRound(tx, jobId, round + 1, step.state, finishedAt);
  });
}

/** What a program job's params hold (submit.ts, planProgramJob). */
interface ProgramJobParams {
  params?: unknown;
  limits?: { timeMs?: number; memoryMb?: number };
  context?: Record<string, unknown>;
  rounds?: number;
  trim?: number;
  /** A round closes once this share of its units is in (the rest run again next round). */
  roundShare?: number;
}

/** The job row's fields a program's step needs. */
const programJobColumns = { ownerId: true, params: true, merge: true, stopAfterRound: true, program: { select: { kind: true, hash: true, scriptHash: true } } } as const;
type ProgramJobRow = { ownerId: string; params: string; merge: string | null; stopAfterRound: boolean; program: { kind: string; hash: string; scriptHash: string | null } | null };

/** A program job's columns but its stop flag never change once submitted: read once a job. */
const programJobs = new LRUCache<string, Omit<ProgramJobRow, "stopAfterRound">>({ max: 1024 });

async function programJob(db: Db, jobId: string): Promise<Omit<ProgramJobRow, "stopAfterRound">> {
  let job = programJobs.get(jobId);
  if (!job) {
    const { stopAfterRound: _, ...fixed } = await db.job.findUniqueOrThrow({ where: { id: jobId }, select: programJobColumns });
    programJobs.set(jobId, (job = fixed));
  }
  return job;
}

/** A unit of a round as a program's step needs it: its input, and its output once validated. */
export interface RoundUnit {
  id: string;
  idx: number;
  input: unknown;
  done: boolean;
  output?: unknown;
  work: number;
  pay: number;
}

type NextUnits = Extract<RoundOutcome, { kind: "next" }>["units"];

/**
 * Runs an iterative program's step after `round` on its units' outputs, and makes the next
 * round's units (the same inputs, with the step's broadcast as their context), unless the
 * step, the owner or the round count ended the job.
 */
async function stepProgram(deps: { blobs: BlobStore }, jobId: string, round: number, job: ProgramJobRow, state: unknown, units: RoundUnit[], signal?: AbortSignal) {
  const params = JSON.parse(job.params) as ProgramJobParams;
  const program = job.program;
  const codeHash = program?.kind === "wasm" ? program.hash : program?.scriptHash;
  if (!program || !codeHash) return { failed: "the job's program cannot run in rounds" };
  // With a round share, the round closed at that many units: the others' shards run again next round.
  const arrived = units.filter((u) => u.done);
  const needed = params.roundShare && params.roundShare < 1 ? roundQuorum(units.length, params.roundShare) : units.length;
  if (!units.length || arrived.length < needed) return { failed: `round ${round} ended before enough of its units had a validated result` };
  const stepJob = {
    kind: program.kind === "wasm" ? ("wasm" as const) : ("js" as const), codeHash, merge: job.merge, trim: params.trim, params: params.params, context: params.context,
    timeMs: params.limits?.timeMs ?? 30_000, memoryMb: params.limits?.memoryMb ?? 256, owner: job.ownerId, signal, jobId,
  };
  let step: ProgramStep;
  try {
    const missing = units.filter((u) => !u.done).map((u) => u.idx);
    step = await runProgramStep(deps, stepJob, round, arrived.map((u) => u.output), state, units.length, missing);
  } catch (e) {
    return { failed: `Round ${round}'s step failed: ${(e as Error).message}` };
  }
  const done = step.done || job.stopAfterRound || round >= (params.rounds ?? round);
  // The first metric is the one charted as converging; all of them are kept as the round's stats.
  const metric = Object.values(step.metrics)[0] ?? null;
  const next: NextUnits = done ? [] : units.map((u) => ({
    id: roundUnitId(jobId, round + 1, u.idx), index: u.idx,
    input: { ...(u.input as Record<string, unknown>), context: { round: round + 1, broadcast: (step as { next: unknown }).next } }, work: Math.round(u.work), pay: u.pay,
  }));
  return { step, done, metric, next };
}

/** The job's result once a step ended it: step's result when it said done, else (out of rounds, or stopped) its last state. */
async function programResult(blobs: BlobStore, step: ProgramStep): Promise<RoundOutcome> {
  return { kind: "done", ...(await storedResult(blobs, JSON.stringify((step.done ? step.result : step.state) ?? null))) };
}

/**
 * completeRound for an iterative program, from the database (after a restart, in cluster
 * mode): its own step, sandboxed (programStep.ts), makes the next round's broadcast and
 * state, or the result. What is stored as the round's `next` is the whole checked step, so
 * that after a restart the job ends with the same result.
 */
async function completeProgramRound(deps: { db: Db; blobs: BlobStore }, jobId: string, round: number, job: ProgramJobRow, signal?: AbortSignal): Promise<RoundOutcome> {
  const { db } = deps;
  const row = await db.jobRound.findUnique({ where: { jobId_round: { jobId, round } } });
  if (!row) return { kind: "failed", error: `round ${round} was never started` };
  if (row.finishedAt) {
    const step = JSON.parse(row.next!) as ProgramStep;
    return row.done ? programResult(deps.blobs, step) : nextRound(db, jobId, round + 1);
  }
  const rows = await db.workUnit.findMany({ where: { jobId, round }, select: { id: true, idx: true, input: true, output: true, done: true, work: true, pay: true }, orderBy: { idx: "asc" } });
  const units = rows.map((u) => ({ ...u, input: JSON.parse(u.input) as unknown, output: u.done ? (JSON.parse(u.output!) as unknown) : undefined }));
  const r = await stepProgram(deps, jobId, round, job, JSON.parse(row.state) as unknown, units, signal);
  if ("failed" in r) return { kind: "failed", error: r.failed! };
  await storeStep(db, jobId, round, row.startedAt, {
    done: r.done, next: r.step, metric: r.metric, stats: r.step.metrics, state: r.step.state, inputs: r.next,
  });
  return r.done ? programResult(deps.blobs, r.step) : { kind: "next", round: round + 1, units: r.next };
}

/**
 * The step after a round from what the coordinator holds: the round's units and the outputs
 * it validated, so nothing waits for the round's last results to be durable or reads them
 * back. The step and the next round's units come back as one op for the group commit, which
 * orders it before any result of the next round: the caller may dispatch that round at once.
 * (A crash before the op commits leaves the round unstepped: the next start steps it again,
 * from the database, to the same units.) No op when the round was stepped already.
 */
export async function stepRoundInMemory(
  deps: { db: Db; blobs: BlobStore }, jobId: string, round: number, units: RoundUnit[], signal?: AbortSignal,
): Promise<{ outcome: RoundOutcome; op?: RoundOp }> {
  const { db } = deps;
  // Raw reads, not the query engine's: 1–2 ms of the event loop per round otherwise.
  const [fixed, row] = await Promise.all([programJob(db, jobId), hotStore(db).roundRow(jobId, round)]);
  if (!row) return { outcome: { kind: "failed", error: `round ${round} was never started` } };
  const job = { ...fixed, stopAfterRound: row.stopAfterRound };
  if (row.finishedAt) return { outcome: await completeProgramRound(deps, jobId, round, job, signal) };
  const r = await stepProgram(deps, jobId, round, job, JSON.parse(row.state) as unknown, units, signal);
  if ("failed" in r) return { outcome: { kind: "failed", error: r.failed! } };
  const finishedAt = new Date();
  const metric = r.metric !== null && Number.isFinite(r.metric) ? r.metric : null;
  const op: RoundOp = {
    type: "round", jobId, round, finishedAt: finishedAt.toISOString(), latencyMs: finishedAt.getTime() - row.startedAt.getTime(), done: r.done,
    next: r.done ? JSON.stringify(r.step) : null, metric, stats: JSON.stringify(r.step.metrics), state: JSON.stringify(r.step.state ?? null),
    units: r.next.map((u) => [u.id, u.index, JSON.stringify(u.input), Math.round(u.work), u.pay]),
  };
  return { outcome: r.done ? await programResult(deps.blobs, r.step) : { kind: "next", round: round + 1, units: r.next }, op };
}

/** A job's latest round's number (rounds are numbered from 1), or null for a job without rounds. */
export async function lastRound(db: Db, jobId: string): Promise<number | null> {
  const row = await db.jobRound.findFirst({ where: { jobId }, orderBy: { round: "desc" }, select: { round: true } });
  return row?.round ?? null;
}

async function nextRound(db: Db, jobId: string, round: number): Promise<RoundOutcome> {
  const units = await db.workUnit.findMany({ where: { jobId, round }, select: { id: true, idx: true, input: true, work: true, pay: true }, orderBy: { idx: "asc" } });
  if (!units.length) return { kind: "failed", error: `round ${round} has no units` };
  return { kind: "next", round, units: units.map((u) => ({ id: u.id, index: u.idx, input: JSON.parse(u.input) as unknown, work: u.work, pay: u.pay })) };
}

/** The most rounds a job of this kernel may run, or null for a one-shot kernel. */
export function maxRoundsOf(kernel: string, params: string): number | null {
  if (kernel === "program") return (JSON.parse(params) as ProgramJobParams).rounds ?? null;
  const rounds = getKernel(kernel)?.rounds;
  return rounds ? rounds.maxRounds(JSON.parse(params)) : null;
}

/**
 * The most rounds one read of a job carries: a job may run 10,000 of them, 2 MB of JSON and
 * ~150 ms of the event loop each time it was read whole (one account's 16 watches held
 * health 1.2 s). Later ones are read a page at a time (`roundsAfter`).
 */
export const ROUNDS_PER_READ = 1000;

/**
 * A job's rounds after round `after` (all, if not given), up to `limit` of them in order, for
 * the job page (none for a one-shot job); `more` when later rounds were left out.
 */
export async function jobRounds(db: Db, jobId: string, after?: number, limit = ROUNDS_PER_READ) {
  const rows = await db.jobRound.findMany({
    where: after === undefined ? { jobId } : { jobId, round: { gt: after } },
    select: { round: true, metric: true, latencyMs: true, stats: true, startedAt: true, finishedAt: true },
    orderBy: { round: "asc" },
    take: limit + 1,
  });
  const more = rows.length > limit;
  if (more) rows.length = limit;
  const rounds = rows.map((r) => ({
    round: r.round, startedAt: r.startedAt, finishedAt: r.finishedAt, latencyMs: r.latencyMs, metric: r.metric,
    stats: r.stats ? (JSON.parse(r.stats) as Record<string, number>) : {},
  }));
  return { rounds, more };
}
