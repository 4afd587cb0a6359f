import crypto from "node:crypto";
import { z } from "zod";
import { getKernel, kernels } from "../../../worker/kernels";
import type { Kernel } from "../../../worker/kernels/types";
import { balanceOf, InsufficientCredits } from "../credits/ledger";
import { escrowAccount, MILLI, userAccount } from "../credits/accounts";
import { UserError } from "../errors";
import { formatBytes } from "../../http/body";
import { jsonObjectSchema } from "../jsonInput";
import type { AppDeps } from "../deps";
import { DEFAULT_CSV_SHARDS, programInputSchema, splitProgramInput } from "../programs/split";
import { getProgram } from "../programs/programs";
import { checkInputRoom, diskShort, holdPlannedBlobs } from "../programs/files";
import { checkOutputRoom } from "../programs/outputStorage";
import { pricePerCpuSecond } from "../pricing/pricing";
import { firstRound, roundUnitId } from "./rounds";
import { DEFAULT_TRIM, NUMERIC_MERGES, trimCount } from "../programs/aggregate";
import { runProgramStep } from "../programs/programStep";
import { warmStep } from "../../../worker/sandbox/stepSandbox";
import { SandboxBusyError } from "../../../worker/sandbox/reduceOnServer";

/** The most rounds an iterative program's job may ask for (the escrow holds them all). */
export const MAX_ROUNDS = 10_000;
import { idempotencyKeySchema, requestHash, submitOnce } from "./idempotency";

export const replicationSchema = z
  .object({
    /** R: instances of each unit computed by different volunteers. */
    replicas: z.number().int().min(1, "At least 1 replica.").max(10, "At most 10 replicas.").default(2),
    /** Q: agreeing results needed; by default 2, or a majority when R > 2. */
    quorum: z.number().int().min(1).max(10).optional(),
    /** M: most instances ever issued for one unit, after disagreements and errors. */
    maxReplicas: z.number().int().min(1).max(20).optional(),
    /** Let hosts with a long record of valid results compute units alone (with spot checks). */
    adaptive: z.boolean().default(true),
    /** Compare floating-point outputs within a tolerance instead of exactly. */
    tolerance: z.object({ relative: z.number().min(0).max(0.1), absolute: z.number().min(0).max(1e6).default(0) }).optional(),
  })
  .transform((r) => {
    const quorum = r.quorum ?? (r.replicas <= 2 ? r.replicas : Math.floor(r.replicas / 2) + 1);
    return { ...r, quorum, maxReplicas: r.maxReplicas ?? Math.min(20, r.replicas + 3) };
  })
  .refine((r) => r.quorum <= r.replicas, { message: "The quorum cannot exceed the number of replicas." })
  .refine((r) => r.replicas <= r.maxReplicas, { message: "maxReplicas must be at least the number of replicas." });

export const submitInputSchema = z.object({
  /** A built-in kernel, or "program" for an uploaded program. */
  kernel: z.string().min(1).max(64),
  /** A kernel's parameters (checked against its schema, unknown ones refused), or a program's own. */
  params: jsonObjectSchema.default({}),
  /** Units to cut the work into (for a program's JSON or block input the input decides). */
  chunks: z.number().int("The chunk count must be a whole number.").min(1, "A job needs at least 1 chunk.").optional(),
  replication: replicationSchema.prefault({}),
  /** For kernel "program": the uploaded program's sha256, its input and how outputs merge. */
  program: z.string().regex(/^[0-9a-f]{64}$/, "A program is named by its sha256 (64 hex digits).").optional(),
  input: programInputSchema.optional(),
  /**
   * How unit outputs merge: concat, the program's reduce, or coordinate-wise over numeric
   * arrays (aggregate.ts): mean, median, trimmed-mean (dropping `trim` of them at each end).
   */
  merge: z.enum(["concat", "reduce", ...NUMERIC_MERGES]).default("concat"),
  trim: z.number().min(0, "trim is a share: 0 or more.").max(0.49, "trim is the share dropped at each end: below 0.5.").optional(),
  /** An iterative program (one that exports step): the most rounds it may run. */
  /** An iterative program's round closes once this share of its units is in; the rest run again next round. */
  roundShare: z.number().gt(0, "roundShare is a share of the units: above 0.").max(1, "roundShare is a share of the units: at most 1.").optional(),
  /**
   * An iterative program's last running units get copies on idle volunteers; the first
   * result wins. Off by default: where volunteers share CPUs the copies slow rounds down.
   */
  speculate: z.boolean().optional(),
  rounds: z.number().int("rounds must be a whole number.").min(1, "At least 1 round.").max(MAX_ROUNDS, `At most ${MAX_ROUNDS} rounds.`).optional(),
  /** Wall-clock limit per task; a task that runs longer fails (and is retried elsewhere). */
  timeLimitSeconds: z.number().positive().max(3600).optional(),
  /**
   * A program job's bound on one unit's output (its canonical JSON, in bytes): a larger answer
   * is that task's error. Default DEFAULT_OUTPUT_LIMIT_BYTES; at most UNIT_OUTPUT_BYTES.
   */
  outputLimitBytes: z.number().int("outputLimitBytes must be a whole number of bytes.").min(16, "outputLimitBytes must be at least 16 bytes.").optional(),
  /** The consumer's estimate of one unit's CPU time, for pricing a program's units. */
  cpuSecondsPerUnit: z.number().positive().max(3600).default(1),
  /** The client's key for this submission (or the Idempotency-Key header): a repeat returns the first job. */
  idempotencyKey: idempotencyKeySchema.optional(),
});
export type SubmitInput = z.infer<typeof submitInputSchema>;

interface Plan {
  kernel: Pick<Kernel, "name">;
  replication: SubmitInput["replication"];
  params: Record<string, unknown>;
  units: Array<{ input: unknown; work: number; pay: number }>;
  /** Millicredits per reference CPU-second. */
  price: number;
  estimate: number;
  /** An iterative kernel's job: its first round's state, and the most rounds the escrow covers. */
  rounds?: { state: unknown; maxRounds: number };
}

/**
 * The step before round 1 runs at submission, before anything is held or charged: it gets at
 * most this long (making the first broadcast and state takes milliseconds), and an account
 * runs one at a time (`firstSteps`). With the job's own limit (up to an hour), a stranger's
 * step of `while (true) {}` held a sandbox thread, a core and up to 256 MiB for free.
 */
const FIRST_STEP_MAX_MS = 5_000;
/** ...and waits at most this long for one of the server's sandbox threads (others' reduces and steps may hold them). */
const FIRST_STEP_WAIT_MS = 5_000;
const firstSteps = new Set<string>();

/**
 * What one unit of a program job may answer unless the job says otherwise (BOINC's
 * max_nbytes): a volunteer answering garbage as large as the server allows (UNIT_OUTPUT_BYTES)
 * stored that much for each of a victim's units.
 */
export const DEFAULT_OUTPUT_LIMIT_BYTES = 1024 * 1024;

/** Whether a submission of this account is running its program's first step now. */
export const inFirstStep = (ownerId: string) => firstSteps.has(ownerId);

/** Prices units: each is paid on its estimated work, never on a volunteer's own timing. */
function price<U extends { input: unknown; work: number }>(creditsPerSecond: number, units: U[], quorum: number) {
  const perSecond = Math.round(creditsPerSecond * MILLI);
  // In place: every caller passes units made for this call, and copying 10,000 of them made a
  // public price estimate cost the event loop 5-14 ms.
  const priced = units as Array<U & { pay: number }>;
  let total = 0;
  for (const u of priced) total += u.pay = Math.max(1, Math.ceil((u.work * perSecond) / 1000));
  // The most a job can cost: every unit paid to a full quorum of volunteers.
  return { units: priced, price: perSecond, estimate: total * quorum };
}

/**
 * How many outputs a robust merge of n outputs outvotes: a trimmed mean drops that many at
 * each end, a median ignores up to that many on one side. One host is given no more units
 * than that while other hosts can take them (JobSpec.maxUnitsPerHost).
 */
function outvoted(merge: SubmitInput["merge"], n: number, trim = DEFAULT_TRIM): number | undefined {
  const k = merge === "trimmed-mean" ? trimCount(n, trim) : merge === "median" ? Math.floor((n - 1) / 2) : 0;
  return k >= 1 ? k : undefined;
}

/** Validates a built-in kernel submission and prices it, without side effects. */
export async function planJob(deps: Pick<AppDeps, "env" | "db">, input: SubmitInput): Promise<Plan> {
  if (input.kernel === "program") throw new UserError("BAD_REQUEST", "Program jobs are planned with planProgramJob.");
  for (const option of ["rounds", "roundShare", "trim", "speculate", "outputLimitBytes"] as const) {
    if (input[option] !== undefined) throw new UserError("BAD_REQUEST", `${option} applies to an uploaded program's job, not to the ${input.kernel} kernel.`);
  }
  const kernel = getKernel(input.kernel);
  if (!kernel) {
    throw new UserError("BAD_REQUEST", `Unknown kernel "${input.kernel}". Available: ${Object.keys(kernels).join(", ")}.`);
  }
  const known = Object.keys((kernel.params as unknown as { shape: object }).shape);
  const parsed = kernel.params.safeParse(input.params);
  if (!parsed.success) {
    // A misspelt or made-up parameter is named, rather than silently ignored.
    const unknown = parsed.error.issues.find((i) => i.code === "unrecognized_keys");
    if (unknown) {
      const shown = unknown.keys.slice(0, 5).map((k) => JSON.stringify(k.length > 64 ? `${k.slice(0, 64)}…` : k));
      if (unknown.keys.length > 5) shown.push(`and ${unknown.keys.length - 5} more`);
      const names = `parameter${unknown.keys.length > 1 ? "s" : ""} ${shown.join(", ")}`;
      throw new UserError("BAD_REQUEST", `Unknown ${kernel.name} ${names}. Its parameters are: ${known.join(", ")}.`);
    }
    const i = parsed.error.issues[0];
    throw new UserError("BAD_REQUEST", `Invalid ${kernel.name} parameter ${i.path.join(".") || ""}: ${i.message}`.replace("  ", " "));
  }
  const params = { ...(parsed.data as Record<string, unknown>) };
  // Seeded kernels get a fixed seed at submit, so every replica of a unit computes the same thing.
  if (known.includes("seed") && params.seed === undefined) {
    params.seed = crypto.randomInt(0, 2 ** 31);
  }
  const maxChunks = Math.min(deps.env.MAX_CHUNKS, kernel.maxChunks(params));
  if (input.chunks === undefined) throw new UserError("BAD_REQUEST", "Give a chunk count.");
  if (input.chunks > maxChunks) {
    throw new UserError("BAD_REQUEST", `Too many chunks: ${input.chunks}. This ${kernel.name} job can be split into at most ${maxChunks}.`);
  }
  const first = firstRound(kernel, params, input.chunks);
  const priced = price(await pricePerCpuSecond(deps), first?.units ?? kernel.split(params, input.chunks), input.replication.quorum);
  // An iterative job holds enough for every round it may run; what it does not use is refunded.
  const rounds = first && { state: first.state, maxRounds: first.maxRounds };
  return { kernel, params, ...priced, estimate: priced.estimate * (rounds?.maxRounds ?? 1), rounds, replication: input.replication };
}

/**
 * Validates a program submission: the program exists, its input splits into units (file
 * chunks are stored as blobs), and a reduce merge needs a program that exports reduce.
 * The task parameters volunteers receive name the program by hash and carry the limits.
 */
export async function planProgramJob(deps: AppDeps, ownerId: string, input: SubmitInput): Promise<Plan & { programHash: string; release: (committed: boolean) => Promise<void>; inputBytes: number }> {
  if (!input.program || !input.input) throw new UserError("BAD_REQUEST", "A program job needs `program` (its sha256) and `input`.");
  const program = await getProgram(deps, input.program, ownerId);
  if (input.merge === "reduce" && !program.hasReduce) {
    throw new UserError("BAD_REQUEST", `Program ${program.name} exports no reduce: merge its outputs with "concat" instead.`);
  }
  const replication = { ...input.replication };
  if (!replication.tolerance && program.comparator?.kind === "tolerance") {
    replication.tolerance = { relative: program.comparator.relative ?? 0, absolute: program.comparator.absolute ?? 0 };
  }
  if (input.rounds !== undefined) {
    if (!program.exports.includes("step")) {
      const how = program.kind === "js" ? "add export function step(merged, state, ctx)" : "export a function step(ptr: i32, len: i32) -> i32";
      throw new UserError("BAD_REQUEST", `Program ${program.name} exports no step, so it cannot run in rounds: ${how} (see writing-jobs.md), or leave out rounds.`);
    }
    if (program.kind === "wasm" && input.merge === "reduce") {
      throw new UserError("BAD_REQUEST", "A WebAssembly program's rounds merge with concat, mean, median or trimmed-mean: its step gets the outputs, so it needs no reduce.");
    }
  }
  if (input.roundShare !== undefined && input.rounds === undefined) throw new UserError("BAD_REQUEST", "roundShare applies to a job that runs in rounds only.");
  if (input.speculate && input.rounds === undefined) throw new UserError("BAD_REQUEST", "speculate applies to a job that runs in rounds only.");
  if (input.trim !== undefined && input.merge !== "trimmed-mean") throw new UserError("BAD_REQUEST", "trim applies to the trimmed-mean merge only.");
  const timeMs = Math.round((input.timeLimitSeconds ?? deps.env.TASK_TIME_LIMIT_SECONDS) * 1000);
  const memoryMb = deps.env.WASM_MEMORY_LIMIT_MB;
  const outputBytes = input.outputLimitBytes ?? Math.min(DEFAULT_OUTPUT_LIMIT_BYTES, deps.env.UNIT_OUTPUT_BYTES);
  if (outputBytes > deps.env.UNIT_OUTPUT_BYTES) {
    throw new UserError("BAD_REQUEST", `outputLimitBytes may be at most ${deps.env.UNIT_OUTPUT_BYTES} (${formatBytes(deps.env.UNIT_OUTPUT_BYTES)}, the most a unit's output may store on this server).`);
  }
  // The step thread starts on another core while the input is read and cut into shards.
  if (input.rounds !== undefined) warmStep(memoryMb);
  const split = await splitProgramInput(deps, ownerId, input.input, input.chunks, deps.env.MAX_CHUNKS);
  const release = holdPlannedBlobs(deps, split.units);
  try {
    await checkInputRoom(deps, ownerId, split.storedBytes);
    return { ...(await planSplitProgramJob(deps, ownerId, input, program, replication, { timeMs, memoryMb, outputBytes }, split)), release, inputBytes: split.storedBytes };
  } catch (e) {
    await release(false);
    throw e;
  }
}

async function planSplitProgramJob(
  deps: AppDeps, ownerId: string, input: SubmitInput, program: Awaited<ReturnType<typeof getProgram>>, replication: SubmitInput["replication"],
  limits: { timeMs: number; memoryMb: number; outputBytes: number }, split: Awaited<ReturnType<typeof splitProgramInput>>,
): Promise<Plan & { programHash: string }> {
  const { timeMs, memoryMb } = limits;
  const params = {
    program: { hash: program.hash, kind: program.kind, script: program.scriptHash },
    params: input.params,
    limits,
    ...(split.context ? { context: split.context } : {}),
    ...(input.rounds !== undefined ? { rounds: input.rounds } : {}),
    ...(input.trim !== undefined ? { trim: input.trim } : {}),
    ...(input.roundShare !== undefined && input.roundShare < 1 ? { roundShare: input.roundShare } : {}),
    ...(input.speculate ? { speculate: true } : {}),
    ...(outvoted(input.merge, split.units.length, input.trim) ? { maxUnitsPerHost: outvoted(input.merge, split.units.length, input.trim) } : {}),
  };
  let inputs: Array<(typeof split.units)[number] & { context?: Record<string, unknown> }> = split.units;
  let rounds: Plan["rounds"];
  if (input.rounds !== undefined) {
    // Round 0 of the step: the first round's broadcast (the initial weights) and state.
    // Nothing is held yet, so this step is free: at most FIRST_STEP_MAX_MS, one at a time per account.
    const job = {
      kind: program.kind, codeHash: program.kind === "js" ? program.scriptHash! : program.hash, merge: input.merge, trim: input.trim,
      params: input.params, context: split.context, timeMs: Math.min(timeMs, FIRST_STEP_MAX_MS), memoryMb, owner: ownerId, waitMs: FIRST_STEP_WAIT_MS,
    };
    if (firstSteps.has(ownerId)) {
      throw new UserError("TOO_MANY_REQUESTS", "Another of your submissions is running its program's first step. Wait for it, then submit again.");
    }
    firstSteps.add(ownerId);
    const first = await runProgramStep(deps, job, 0, null, null, inputs.length).catch((e: Error) => {
      if (e instanceof SandboxBusyError) {
        throw new UserError("TOO_MANY_REQUESTS", "The server's program sandboxes are busy (with your own programs' steps and reduces, or others'): submit again in a few seconds.");
      }
      throw new UserError("BAD_REQUEST", `The program's step failed before the first round: ${e.message}`);
    }).finally(() => firstSteps.delete(ownerId));
    if (first.done) throw new UserError("BAD_REQUEST", "The program's step ended the job before its first round: with round 0 it must return { next, state }.");
    inputs = inputs.map((i) => ({ ...i, context: { round: 1, broadcast: first.next } }));
    rounds = { state: first.state, maxRounds: input.rounds };
  }
  const work = input.cpuSecondsPerUnit * 1000;
  const priced = price(await pricePerCpuSecond(deps), inputs.map((i) => ({ input: i, work })), replication.quorum);
  return {
    kernel: { name: "program" }, params, ...priced, estimate: priced.estimate * (rounds?.maxRounds ?? 1), rounds, replication, programHash: program.hash,
  };
}

export async function estimateJob(deps: AppDeps, input: SubmitInput, viewerId: string | null = null) {
  const plan = input.kernel === "program" ? await estimateProgramJob(deps, input, viewerId) : await planJob(deps, input);
  const maxRounds = (plan as { rounds?: Plan["rounds"] }).rounds?.maxRounds;
  const work = plan.units.reduce((s, u) => s + u.work, 0) * (maxRounds ?? 1);
  return {
    kernel: plan.kernel.name, chunks: plan.units.length, cpuSeconds: work / 1000, price: plan.price, estimate: plan.estimate, maxRounds,
    replicas: plan.replication.replicas, quorum: plan.replication.quorum, adaptive: plan.replication.adaptive,
  };
}

/**
 * A program job's price without storing anything (chunk blobs are only cut at submit): the
 * same units and the same price as planProgramJob, counted from the input's description.
 */
async function estimateProgramJob(deps: AppDeps, input: SubmitInput, viewerId: string | null) {
  const spec = input.input;
  if (!spec) throw new UserError("BAD_REQUEST", "A program job needs an input.");
  if (input.program) await getProgram(deps, input.program, viewerId);
  const need = () => {
    if (input.chunks === undefined) throw new UserError("BAD_REQUEST", `Give a chunk count for ${spec.mode} input.`);
    return input.chunks;
  };
  let n: number;
  if (spec.mode === "json") n = spec.items.length;
  else if (spec.mode === "blocks") {
    // Only the viewer's own upload: nobody learns from an estimate whether someone else stored a file, or its size.
    const file = viewerId ? await deps.db.dataFile.findUnique({ where: { hash_ownerId: { hash: spec.data, ownerId: viewerId } }, select: { size: true } }) : null;
    if (!file) throw new UserError("NOT_FOUND", `No data file ${spec.data}: upload it first.`);
    n = Math.ceil(file.size / spec.blockBytes);
  } else if (spec.mode === "range") {
    n = need();
    if (spec.end - spec.start < n) throw new UserError("BAD_REQUEST", `The range [${spec.start}, ${spec.end}) has fewer numbers than the ${n} chunks asked for.`);
  } else if (spec.mode === "csv" && input.chunks === undefined) n = DEFAULT_CSV_SHARDS;
  else n = need();
  if (n > deps.env.MAX_CHUNKS) throw new UserError("BAD_REQUEST", `Too many units: ${n}. A job can have at most ${deps.env.MAX_CHUNKS}.`);
  const units = Array.from({ length: n }, () => ({ input: null, work: input.cpuSecondsPerUnit * 1000 }));
  const priced = price(await pricePerCpuSecond(deps), units, input.replication.quorum);
  const rounds = input.rounds === undefined ? undefined : { state: null, maxRounds: input.rounds };
  return { kernel: { name: "program" }, replication: input.replication, params: {}, ...priced, estimate: priced.estimate * (rounds?.maxRounds ?? 1), rounds };
}

/** A submission, once per idempotency key when it has one (see idempotency.ts). */
export async function submitJobOnce(deps: AppDeps, ownerId: string, input: SubmitInput) {
  const { idempotencyKey: key, ...submission } = input;
  if (!key) return { ...(await submitJob(deps, ownerId, input)), replayed: false };
  const hash = requestHash(submission);
  return submitOnce(deps, ownerId, key, hash, () => submitJob(deps, ownerId, input, { idempotencyKey: key, requestHash: hash }));
}

/**
 * Before a program job's input is cut and stored: the disk has room, and the owner can pay the
 * estimate. Chunks were stored first and the credits checked after: a free account with no
 * credits stored 33 MB a second of chunks for submissions it could never pay for.
 */
async function admitProgramJob(deps: AppDeps, ownerId: string, input: SubmitInput) {
  const short = await diskShort(deps, 0);
  if (short) throw new UserError("SERVICE_UNAVAILABLE", short);
  await checkOutputRoom(deps, ownerId);
  // A file cut in lines or blocks is stored again whole, as its chunks: refused before cutting it.
  const spec = input.input;
  if (spec && (spec.mode === "lines" || spec.mode === "blocks")) {
    const file = await deps.db.dataFile.findUnique({ where: { hash_ownerId: { hash: spec.data, ownerId } }, select: { size: true } });
    if (file) await checkInputRoom(deps, ownerId, file.size);
  }
  const { estimate } = await estimateProgramJob(deps, input, ownerId);
  const balance = await balanceOf(deps.db, userAccount(ownerId));
  if (balance < estimate) {
    throw new UserError("PAYMENT_REQUIRED", `${new InsufficientCredits(estimate, balance).message} Volunteer some CPU time to earn credits, or submit fewer or smaller chunks.`);
  }
}

export async function submitJob(deps: AppDeps, ownerId: string, input: SubmitInput, idempotency?: { idempotencyKey: string; requestHash: string }) {
  if (input.kernel === "program") await admitProgramJob(deps, ownerId, input);
  const plan = input.kernel === "program" ? await planProgramJob(deps, ownerId, input) : await planJob(deps, input);
  const release = "release" in plan ? (plan.release as (committed: boolean) => Promise<void>) : async () => {};
  let committed = false;
  try {
    const r = await commitJob(deps, ownerId, input, plan, idempotency);
    committed = true;
    return r;
  } finally {
    await release(committed);
  }
}

async function commitJob(deps: AppDeps, ownerId: string, input: SubmitInput, plan: Plan, idempotency?: { idempotencyKey: string; requestHash: string }) {
  const programHash = "programHash" in plan ? (plan.programHash as string) : null;
  const id = `j${crypto.randomBytes(9).toString("base64url").replace(/[-_]/g, "x")}`;
  const leaseMs = Math.round(deps.env.LEASE_SECONDS * 1000);
  const round = plan.rounds ? 1 : 0;
  const units = plan.units.map((u, idx) => ({ id: roundUnitId(id, round, idx), idx, ...u }));
  try {
    // One transaction on the database writer thread, which does every write under load: a
    // 10,000-unit job is a few multi-row statements, and the event loop never waits on the
    // database's write lock.
    await deps.coordinator.writeAlone([{
      type: "submit",
      job: {
        id, ownerId, kernel: plan.kernel.name, params: JSON.stringify(plan.params), chunks: units.length, price: plan.price,
        estimate: plan.estimate, leaseMs, replicas: plan.replication.replicas, quorum: plan.replication.quorum,
        maxReplicas: plan.replication.maxReplicas, adaptive: plan.replication.adaptive ? 1 : 0,
        tolerance: plan.replication.tolerance ? JSON.stringify(plan.replication.tolerance) : null, programHash,
        inputMode: programHash ? input.input!.mode : null, merge: programHash ? input.merge : null,
        timeLimitMs: programHash ? (plan.params as { limits: { timeMs: number } }).limits.timeMs : null,
        inputBytes: "inputBytes" in plan ? (plan.inputBytes as number) : 0,
        ...idempotency,
      },
      units: units.map((u) => [u.id, u.idx, JSON.stringify(u.input), Math.round(u.work), u.pay]),
      round, roundState: plan.rounds ? JSON.stringify(plan.rounds.state) : null,
      ownerAccount: userAccount(ownerId), escrow: escrowAccount(id), estimate: plan.estimate,
      // Checked before the cut, and again where the job is inserted: parallel submissions,
      // on any node, cannot each pass it (on PostgreSQL, 12 at once all did).
      ...(deps.env.ACCOUNT_STORAGE_BYTES ? { inputQuota: deps.env.ACCOUNT_STORAGE_BYTES } : {}),
    }]);
  } catch (e) {
    // Thrown on the writer thread: it arrives by name, with its message.
    if (e instanceof InsufficientCredits || (e as Error).name === "InsufficientCredits") {
      throw new UserError("PAYMENT_REQUIRED", `${(e as Error).message} Volunteer some CPU time to earn credits, or submit fewer or smaller chunks.`);
    }
    if ((e as Error).name === "InputBudgetExceeded") throw new UserError("PAYLOAD_TOO_LARGE", (e as Error).message);
    throw e;
  }
  deps.coordinator.addJob({
    id, kernel: plan.kernel.name, params: plan.params, leaseMs, maxErrors: 3,
    units: units.map((u) => ({ id: u.id, index: u.idx, input: u.input, work: u.work })),
    ...replicationSpec(plan.replication),
  }, ownerId, new Map(units.map((u) => [u.id, u.pay])), undefined, round);
  return { id, estimate: plan.estimate, chunks: units.length };
}

/** The scheduler's view of a job's replication settings (also rebuilt from a job row at recovery). */
export function replicationSpec(r: { replicas: number; quorum: number; maxReplicas: number; adaptive: boolean; tolerance?: { relative: number; absolute: number } | null }) {
  return {
    replication: { target: r.replicas, quorum: r.quorum, maxInstances: r.maxReplicas },
    adaptive: r.adaptive,
    comparator: r.tolerance ? { kind: "tolerance" as const, ...r.tolerance } : { kind: "exact" as const },
  };
}
