import { parse, connection, connectionOptions, intOption, UsageError } from "../args";
import { apiClient } from "../client";

type Client = ReturnType<typeof apiClient>;
type Job = Awaited<ReturnType<Client["jobs"]["get"]["query"]>>;

const ENDED = new Set(["completed", "failed", "cancelled"]);

async function waitFor(api: Client, id: string, onProgress?: (j: Job) => void): Promise<Job> {
  for (;;) {
    const job = await api.jobs.get.query({ id });
    if (ENDED.has(job.state)) return job;
    onProgress?.(job);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function report(api: Client, job: Job, json: boolean) {
  const result = job.state === "completed" ? await api.jobs.result.query({ id: job.id }) : null;
  const out = {
    id: job.id, status: job.state, kernel: job.kernel, chunks: job.chunks, done: job.progress.done,
    estimate: job.estimate / 1000, cost: job.cost / 1000, error: job.error, replication: job.replication, results: job.results, result,
  };
  if (json) {
    console.log(JSON.stringify(out));
  } else {
    console.log(`job ${job.id}: ${job.state}, ${job.progress.done}/${job.chunks} units, cost ${out.cost} of ${out.estimate} credits held`);
    if (job.error) console.log(`error: ${job.error}`);
    if (result !== null) console.log(`result: ${summarize(result)}`);
  }
  return ENDED.has(job.state) && job.state !== "completed" ? 1 : 0;
}

function summarize(result: unknown): string {
  const s = JSON.stringify(result);
  return s.length > 400 ? `${s.slice(0, 400)}… (${s.length} characters; use --json for all of it)` : s;
}

const progressLine = (json: boolean) => (j: Job) => {
  if (!json && process.stderr.isTTY) process.stderr.write(`\r${j.progress.done}/${j.progress.total} units done, ${j.progress.throughput.toFixed(1)}/s   `);
};

export async function submit(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    ...connectionOptions, chunks: { type: "string" }, params: { type: "string" }, wait: { type: "boolean", default: false },
    replicas: { type: "string" }, quorum: { type: "string" }, "max-replicas": { type: "string" }, tolerance: { type: "string" },
    "no-adaptive": { type: "boolean", default: false },
  });
  const kernel = positionals[0];
  if (!kernel) throw new UsageError("name a kernel: tabgrid submit pi --chunks 8");
  const chunks = intOption(values.chunks, "chunks");
  if (chunks === undefined) throw new UsageError("--chunks is required");
  let params: Record<string, unknown> = {};
  if (values.params !== undefined) {
    try {
      params = JSON.parse(values.params);
    } catch {
      throw new UsageError(`--params must be a JSON object (got ${values.params})`);
    }
    if (typeof params !== "object" || params === null || Array.isArray(params)) throw new UsageError("--params must be a JSON object");
  }
  const tolerance = values.tolerance === undefined ? undefined : Number(values.tolerance);
  if (tolerance !== undefined && !(tolerance >= 0)) throw new UsageError("--tolerance is a relative tolerance such as 1e-9");
  const replication = {
    replicas: intOption(values.replicas, "replicas"),
    quorum: intOption(values.quorum, "quorum"),
    maxReplicas: intOption(values["max-replicas"], "max-replicas"),
    adaptive: !values["no-adaptive"],
    ...(tolerance !== undefined ? { tolerance: { relative: tolerance, absolute: 0 } } : {}),
  };
  const conn = connection(values);
  const api = apiClient(conn);
  const created = await api.jobs.submit.mutate({ kernel, chunks, params, replication });
  if (!values.json) console.error(`submitted job ${created.id} (${created.chunks} units, ${created.estimate / 1000} credits held)`);
  const job = values.wait ? await waitFor(api, created.id, progressLine(values.json!)) : await api.jobs.get.query({ id: created.id });
  if (values.wait && !values.json && process.stderr.isTTY) process.stderr.write("\n");
  return report(api, job, values.json!);
}

export async function job(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...connectionOptions, wait: { type: "boolean", default: false } });
  const id = positionals[0];
  if (!id) throw new UsageError("name a job id: tabgrid job <id>");
  const api = apiClient(connection(values));
  const j = values.wait ? await waitFor(api, id, progressLine(values.json!)) : await api.jobs.get.query({ id });
  return report(api, j, values.json!);
}

export async function status(argv: string[]): Promise<number> {
  const { values } = parse(argv, connectionOptions);
  const s = await apiClient(connection(values)).cluster.status.query();
  if (values.json) console.log(JSON.stringify(s));
  else {
    console.log(`volunteers online: ${s.volunteers} (${s.threads} threads on ${s.connections} connections)`);
    console.log(`tasks queued: ${s.tasksQueued}, running: ${s.tasksRunning}, jobs running: ${s.jobsRunning}`);
    console.log(`throughput: ${s.tasksPerSecond.toFixed(1)} tasks/s`);
  }
  return 0;
}
