import { TRPCClientError } from "@trpc/client";
import crypto from "node:crypto";
import { bytesOption, parse, connection, connectionOptions, plural, positiveIntOption, secondsOption, UsageError } from "../args";
import fs from "node:fs";
import { apiClient } from "../client";
import { uploadFile } from "../upload";
import { downloadJobFile } from "../download";
import { checkJsonBounds, CONSUMER_INPUT_LIMITS } from "../../worker/protocol/jsonBounds";

type Client = ReturnType<typeof apiClient>;
type Job = Awaited<ReturnType<Client["jobs"]["get"]["query"]>>;

const ENDED = new Set(["completed", "failed", "cancelled"]);
const MERGES = ["concat", "reduce", "mean", "median", "trimmed-mean"];

async function waitFor(api: Client, id: string, onProgress?: (j: Job) => void): Promise<Job> {
  // The rounds already ended are not asked for again (a job may run 10,000 of them); the
  // report at the end has them all.
  let after: number | undefined;
  for (;;) {
    const job = await api.jobs.get.query(after === undefined ? { id } : { id, roundsAfter: after });
    onProgress?.(job);
    after = job.rounds.filter((r) => r.finishedAt !== null).at(-1)?.round ?? after;
    // A long job's rounds come a page at a time: the next page at once.
    if (job.roundsMore) continue;
    if (ENDED.has(job.state)) return after === undefined ? job : wholeJob(api, id);
    // Rounds may last milliseconds: they are shown as they end, a few a second.
    await new Promise((r) => setTimeout(r, job.round !== null ? 200 : 500));
  }
}

/** A job with all of its rounds: the API gives them a page at a time (`roundsMore`). */
async function wholeJob(api: Client, id: string): Promise<Job> {
  const job = await api.jobs.get.query({ id });
  const rounds = [...job.rounds];
  for (let page = job; page.roundsMore; ) {
    page = await api.jobs.get.query({ id, roundsAfter: rounds.at(-1)!.round });
    rounds.push(...page.rounds);
  }
  return { ...job, rounds, roundsMore: false };
}

type RoundRow = Job["rounds"][number];
const roundRecord = (r: RoundRow) => ({ round: r.round, latencyMs: r.latencyMs, metric: r.metric, ...r.stats });

function roundLine(r: RoundRow): string {
  const stats = Object.entries(r.stats);
  const shown = stats.length ? stats.map(([k, v]) => `${k} ${v.toPrecision(4)}`) : [`metric ${r.metric === null ? "—" : r.metric.toPrecision(4)}`];
  return `round ${r.round}: ${r.latencyMs} ms, ${shown.join(", ")}`;
}

async function report(api: Client, job: Job, json: boolean, outputFile: string | undefined, conn: { url: string; apiKey?: string }) {
  // A result too large for the API (it says so) is only saved with --output.
  let tooLarge: string | undefined;
  const result = job.state === "completed"
    ? await api.jobs.result.query({ id: job.id }).catch((e: { data?: { code?: string }; message: string }) => {
      if (e.data?.code !== "UNPROCESSABLE_CONTENT") throw e;
      tooLarge = e.message;
      return null;
    })
    : null;
  if (outputFile && job.state === "completed") {
    await downloadJobFile(conn, job.id, "result", outputFile);
    // Saved: no need to say where to download it.
    if (tooLarge) tooLarge = `The result (${(fs.statSync(outputFile).size / 2 ** 20).toFixed(1)} MiB) is saved in ${outputFile}.`;
  }
  const out = {
    id: job.id, status: job.status, kernel: job.kernel, chunks: job.chunks, done: job.progress.done,
    // Results that wait for a copy no volunteer online may compute (see `job ID --accept-unconfirmed`).
    waiting: job.progress.waiting,
    estimate: job.estimate / 1000, cost: job.cost / 1000, error: job.error, replication: job.replication, results: job.results, result,
    // Too large for the API: where to download it instead.
    ...(tooLarge ? { resultNote: tooLarge } : {}),
    // Iterative jobs: each round's latency and converging metric.
    ...(job.round !== null ? { round: job.round, rounds: job.rounds.map(roundRecord) } : {}),
  };
  if (json) {
    console.log(JSON.stringify(out));
  } else {
    console.log(`job ${job.id}: ${job.status}, ${job.progress.done}/${plural(job.chunks, "unit")}, cost ${out.cost} of ${plural(out.estimate, "credit")} held`);
    if (job.state === "running" && job.progress.waiting) {
      const n = job.progress.waiting.results;
      console.log(`${n} result${n === 1 ? " waits" : "s wait"} for a volunteer from another account to confirm ${n === 1 ? "it" : "them"}.`);
      console.log(`  take them as they are: tabgrid job ${job.id} --accept-unconfirmed`);
      if (job.replication.replicas > 1) console.log(`  or need one copy per unit: tabgrid job ${job.id} --replicas 1`);
    }
    if (job.round !== null) console.log(`rounds: ${job.round} of at most ${job.maxRounds}; metric ${job.rounds.map((r) => (r.metric === null ? "—" : r.metric.toPrecision(3))).join(" → ")}`);
    if (job.error) console.log(`error: ${job.error}`);
    if (result !== null) console.log(`result: ${summarize(result)}`);
    if (tooLarge) console.log(tooLarge);
  }
  return ENDED.has(job.state) && job.state !== "completed" ? 1 : 0;
}

function summarize(result: unknown): string {
  const s = JSON.stringify(result);
  return s.length > 400 ? `${s.slice(0, 400)}… (${s.length} characters; use --json for all of it)` : s;
}

/**
 * While waiting: each round of an iterative job as it ends (a JSON line each with --json, on
 * stdout before the job's own line), else the units done so far on a terminal.
 */
const progressLine = (json: boolean) => {
  let shown = 0;
  return (j: Job) => {
    const ended = j.rounds.filter((r) => r.finishedAt !== null && r.round > shown);
    for (const r of ended) {
      if (json) console.log(JSON.stringify(roundRecord(r)));
      else {
        if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
        console.log(roundLine(r));
      }
      shown = r.round;
    }
    if (!json && process.stderr.isTTY) process.stderr.write(`\r${j.progress.done}/${j.progress.total} units done, ${j.progress.throughput === null ? "—" : j.progress.throughput.toFixed(1)}/s   `);
  };
};

export async function submit(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    ...connectionOptions, chunks: { type: "string" }, params: { type: "string" }, wait: { type: "boolean", default: false },
    replicas: { type: "string" }, quorum: { type: "string" }, "max-replicas": { type: "string" }, tolerance: { type: "string" },
    "no-adaptive": { type: "boolean", default: false }, "idempotency-key": { type: "string" },
    program: { type: "string" }, "input-json": { type: "string" }, range: { type: "string" }, lines: { type: "string" },
    blocks: { type: "string" }, "block-size": { type: "string" }, merge: { type: "string" }, "time-limit": { type: "string" },
    "output-limit": { type: "string" }, "cpu-seconds": { type: "string" }, output: { type: "string" }, "input-csv": { type: "string" }, rounds: { type: "string" }, trim: { type: "string" }, "round-share": { type: "string" }, speculate: { type: "boolean", default: false },
  });
  const kernel = values.program ? "program" : positionals[0];
  if (!kernel) throw new UsageError("name a kernel (tabgrid submit pi --chunks 8) or a program (tabgrid submit --program prog.js --range 0:1000 --chunks 8)");
  const chunks = positiveIntOption(values.chunks, "chunks");
  if (chunks === undefined && !values.program) throw new UsageError("--chunks is required");
  if (values["cpu-seconds"] !== undefined && !values.program) throw new UsageError("--cpu-seconds prices a --program job's units; a kernel estimates its own work");
  if (values["output-limit"] !== undefined && !values.program) throw new UsageError("--output-limit bounds a --program job's outputs; a kernel's are bounded by its schema");
  let params: Record<string, unknown> = {};
  if (values.params !== undefined) {
    try {
      params = JSON.parse(values.params);
    } catch {
      throw new UsageError(`--params must be a JSON object (got ${values.params})`);
    }
    if (typeof params !== "object" || params === null || Array.isArray(params)) throw new UsageError("--params must be a JSON object");
    // Checked here too, so that the reason is the server's and not a stack overflow of our own.
    const why = checkJsonBounds(params, CONSUMER_INPUT_LIMITS);
    if (why) throw new UsageError(`--params ${why}`);
  }
  const tolerance = values.tolerance === undefined ? undefined : Number(values.tolerance);
  if (tolerance !== undefined && !(tolerance >= 0)) throw new UsageError("--tolerance is a relative tolerance such as 1e-9");
  const replication = {
    replicas: positiveIntOption(values.replicas, "replicas"),
    quorum: positiveIntOption(values.quorum, "quorum"),
    maxReplicas: positiveIntOption(values["max-replicas"], "max-replicas"),
    adaptive: !values["no-adaptive"],
    ...(tolerance !== undefined ? { tolerance: { relative: tolerance, absolute: 0 } } : {}),
  };
  const conn = connection(values);
  const api = apiClient(conn);
  const program = values.program ? await programOptions(conn, values) : {};
  // One key per submission: the retries below, or this command run again with the same
  // --idempotency-key after a timeout, give back the job the first attempt created.
  const idempotencyKey = values["idempotency-key"] ?? crypto.randomUUID();
  const created = await submitWithRetries(() => api.jobs.submit.mutate({ kernel, chunks, params, replication, ...program, idempotencyKey }));
  if (!values.json) {
    if (created.replayed) console.error(`job ${created.id} was submitted before under this idempotency key: the same job, nothing charged again`);
    else console.error(`submitted job ${created.id} (${plural(created.chunks, "unit")}, ${plural(created.estimate / 1000, "credit")} held until it ends; the unused part is refunded)`);
    if (values.program && values["cpu-seconds"] === undefined) console.error("priced at 1 reference CPU-second per unit: give --cpu-seconds S for your program's own figure");
  }
  const job = values.wait ? await waitFor(api, created.id, progressLine(values.json!)) : await wholeJob(api, created.id);
  if (values.wait && !values.json && process.stderr.isTTY) process.stderr.write("\n");
  return report(api, job, values.json!, values.output, conn);
}

/** Uploads the program (and data file) and describes how its input is split. */
async function programOptions(conn: { url: string; apiKey?: string }, v: Record<string, string | boolean | undefined>) {
  const modes = ["input-json", "range", "lines", "blocks", "input-csv"].filter((m) => v[m] !== undefined);
  if (modes.length !== 1) throw new UsageError("give exactly one input: --input-json FILE, --range START:END, --lines FILE, --blocks FILE --block-size BYTES or --input-csv FILE");
  // Every option is checked before anything is uploaded.
  const timeLimitSeconds = secondsOption(v["time-limit"] as string | undefined, "time-limit", 3600);
  const outputLimitBytes = bytesOption(v["output-limit"] as string | undefined, "output-limit", 16);
  const cpuSecondsPerUnit = secondsOption(v["cpu-seconds"] as string | undefined, "cpu-seconds", 3600);
  const merge = v.merge === undefined ? "concat" : String(v.merge);
  if (!MERGES.includes(merge)) throw new UsageError(`--merge is one of ${MERGES.join(", ")}`);
  const rounds = positiveIntOption(v.rounds as string | undefined, "rounds");
  const trim = v.trim === undefined ? undefined : Number(v.trim);
  if (trim !== undefined && !(trim >= 0 && trim < 0.5)) throw new UsageError("--trim is the share of outputs dropped at each end, from 0 up to (not including) 0.5");
  if (trim !== undefined && merge !== "trimmed-mean") throw new UsageError("--trim goes with --merge trimmed-mean");
  const roundShare = v["round-share"] === undefined ? undefined : Number(v["round-share"]);
  if (roundShare !== undefined && !(roundShare > 0 && roundShare <= 1)) throw new UsageError("--round-share is the share of a round's units it waits for, above 0 and at most 1 (e.g. 0.9)");
  if (roundShare !== undefined && rounds === undefined) throw new UsageError("--round-share goes with --rounds");
  const speculate = v.speculate === true ? true : undefined;
  if (speculate && rounds === undefined) throw new UsageError("--speculate goes with --rounds");
  let input: unknown;
  if (v["input-json"] !== undefined) {
    let items: unknown;
    try {
      items = JSON.parse(fs.readFileSync(String(v["input-json"]), "utf8"));
    } catch (e) {
      throw new UsageError(`--input-json must be a file holding a JSON array: ${(e as Error).message}`);
    }
    if (!Array.isArray(items)) throw new UsageError("--input-json must hold a JSON array (one element per unit)");
    const why = checkJsonBounds(items, CONSUMER_INPUT_LIMITS);
    if (why) throw new UsageError(`--input-json ${why}`);
    input = { mode: "json", items };
  } else if (v.range !== undefined) {
    const m = /^(-?\d+):(-?\d+)$/.exec(String(v.range));
    if (!m) throw new UsageError("--range is START:END, e.g. 0:1000000");
    input = { mode: "range", start: Number(m[1]), end: Number(m[2]) };
  } else if (v["input-csv"] !== undefined) {
    const file = String(v["input-csv"]);
    const data = await uploadFile(conn, "data", file, { asCsv: true });
    // Read by the server at upload: a file it cannot use is reported before the program is sent.
    if (data.csv && "error" in data.csv) throw new UsageError(`${file} cannot be used as CSV input: ${data.csv.error}`);
    input = { mode: "csv", data: data.hash };
  } else if (v.lines !== undefined) {
    input = { mode: "lines", data: (await uploadFile(conn, "data", String(v.lines))).hash };
  } else {
    const blockBytes = positiveIntOption(v["block-size"] as string | undefined, "block-size");
    if (blockBytes === undefined) throw new UsageError("--blocks needs --block-size BYTES");
    input = { mode: "blocks", data: (await uploadFile(conn, "data", String(v.blocks))).hash, blockBytes };
  }
  const program = await uploadFile(conn, "programs", String(v.program));
  return { program: program.hash, input, merge, timeLimitSeconds, outputLimitBytes, cpuSecondsPerUnit, rounds, trim, roundShare, speculate } as never;
}

export async function job(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    ...connectionOptions, wait: { type: "boolean", default: false }, output: { type: "string" }, units: { type: "string" },
    "accept-unconfirmed": { type: "boolean", default: false }, replicas: { type: "string" }, quorum: { type: "string" },
    delete: { type: "boolean", default: false },
  });
  const id = positionals[0];
  if (!id) throw new UsageError("name a job id: tabgrid job <id>");
  const api = apiClient(connection(values));
  if (values.delete) {
    await api.jobs.delete.mutate({ id });
    if (values.json) console.log(JSON.stringify({ id, deleted: true }));
    else console.log(`job ${id} deleted`);
    return 0;
  }
  // The owner's ways out of a quorum that the volunteers online cannot form.
  if (values.replicas !== undefined || values.quorum !== undefined) {
    const replicas = positiveIntOption(values.replicas, "replicas");
    if (replicas === undefined) throw new UsageError("--quorum needs --replicas R");
    const { decided } = await api.jobs.setReplication.mutate({ id, replicas, quorum: positiveIntOption(values.quorum, "quorum") });
    if (!values.json) console.error(`replication set to ${replicas}; ${decided} unit${decided === 1 ? "" : "s"} decided at once`);
  }
  if (values["accept-unconfirmed"]) {
    const { accepted } = await api.jobs.acceptUnconfirmed.mutate({ id });
    if (!values.json) console.error(`accepted the unconfirmed results of ${accepted} unit${accepted === 1 ? "" : "s"}`);
  }
  const j = values.wait ? await waitFor(api, id, progressLine(values.json!)) : await wholeJob(api, id);
  const conn = connection(values);
  if (values.units) await downloadJobFile(conn, id, "units", values.units);
  return report(api, j, values.json!, values.output, conn);
}

export async function status(argv: string[]): Promise<number> {
  const { values } = parse(argv, connectionOptions);
  const s = await apiClient(connection(values)).cluster.status.query();
  if (values.json) console.log(JSON.stringify(s));
  else {
    console.log(`volunteers online: ${s.volunteers} (${plural(s.threads, "thread")} on ${plural(s.connections, "connection")})`);
    console.log(`tasks queued: ${s.tasksQueued}, running: ${s.tasksRunning}, jobs running: ${s.jobsRunning}`);
    console.log(`throughput: ${s.tasksPerSecond.toFixed(1)} tasks/s${s.nodes > 1 ? ` (${plural(s.nodes, "node")} of a cluster)` : ""}`);
  }
  return 0;
}

/**
 * A submission retried, under its one idempotency key, when the server could not be reached or
 * answered that it is busy (429, 503): up to 3 more attempts, 0.5, 1 and 2 s apart.
 */
async function submitWithRetries<T>(attempt: () => Promise<T>): Promise<T> {
  for (let tries = 0; ; tries++) {
    try {
      return await attempt();
    } catch (e) {
      const status = e instanceof TRPCClientError ? (e.data as { httpStatus?: number } | undefined)?.httpStatus : undefined;
      const retriable = e instanceof TRPCClientError && (status === undefined ? /fetch failed|ECONNRESET|socket/i.test(e.message) : status === 429 || status === 503);
      if (!retriable || tries >= 3) throw e;
      await new Promise((r) => setTimeout(r, 500 * 2 ** tries));
    }
  }
}
