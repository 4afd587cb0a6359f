// The bench's training phase: the logistic-regression example (examples/js/logreg.js) trained
// by data-parallel gradient descent on real CLI volunteers (`tabgrid volunteer` processes),
// against the single-process reference run of the same algorithm (referenceRun.ts). It
// measures each round's latency (from the previous round's end to this one's, as the job
// records it) and the job's wall time from submission to its last round: for the volunteers'
// first job (just started, their code not yet optimised by V8) and for their next one (other
// data of the same size, so its shards are downloaded again), as a fleet that stays online
// runs it.

import { spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { apiClient } from "../../cli/client";
// @ts-expect-error: a plain ES module of the examples, without types
import { makeClassification } from "../../examples/js/make-classification.mjs";
import { referenceRun } from "./referenceRun";
import { repoRoot } from "./server";
import { sleep, summarize, type Summary } from "./stats";

export interface TrainingPlan {
  volunteers: number;
  rows: number;
  features: number;
  shards: number;
  rounds: number;
}

export interface TrainingResult extends TrainingJob {
  /** The same volunteers' next job, on other data of the same size. */
  next: TrainingJob;
}

export interface TrainingJob extends TrainingPlan {
  /** Every round but the first (which includes the volunteers' first fetch of the shards). */
  rounds_ms: Summary;
  firstRoundMs: number;
  /** Submission to completion. */
  wallMs: number;
  /** The single-process reference, the same algorithm, data and rounds. */
  referenceMs: number;
  /** The goal: 1.2 × the reference's time plus 10 ms a round. */
  budgetMs: number;
  loss: number;
  referenceLoss: number;
}

const PROGRAM = path.join(repoRoot, "examples", "js", "logreg.js");

function startVolunteer(url: string, dir: string, i: number): ChildProcess {
  const idFile = path.join(dir, `volunteer-${i}.json`);
  fs.writeFileSync(idFile, JSON.stringify({ volunteerId: crypto.randomBytes(12).toString("base64url"), token: crypto.randomBytes(24).toString("base64url") }));
  return spawn(process.execPath, [path.join(repoRoot, "bin", "tabgrid.js"), "volunteer", "--url", url, "--threads", "1", "--identity", idFile, "--name", `bench-trainer-${i}`], {
    cwd: repoRoot, stdio: "ignore", env: { ...process.env, NODE_OPTIONS: "" },
  });
}

export async function trainingPhase(
  url: string, apiKey: string, api: ReturnType<typeof apiClient>, plan: TrainingPlan, volunteersOnline: () => Promise<number>,
): Promise<TrainingResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-bench-train-"));
  const children = Array.from({ length: plan.volunteers }, (_, i) => startVolunteer(url, dir, i));
  try {
    const deadline = Date.now() + 60_000;
    while ((await volunteersOnline()) < plan.volunteers) {
      if (Date.now() > deadline) throw new Error(`only ${await volunteersOnline()} of ${plan.volunteers} training volunteers connected`);
      await sleep(100);
    }
    const upload = async (kind: string, body: string, name: string) => {
      const res = await fetch(`${url}/api/${kind}?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${apiKey}` }, body });
      if (res.status !== 201) throw new Error(`uploading ${name}: HTTP ${res.status} ${await res.text()}`);
      return ((await res.json()) as { hash: string }).hash;
    };
    const program = await upload("programs", fs.readFileSync(PROGRAM, "utf8"), "logreg.js");
    const first = await trainingJob(api, plan, program, upload, 1);
    const next = await trainingJob(api, plan, program, upload, 2);
    return { ...first, next };
  } finally {
    for (const c of children) c.kill("SIGTERM");
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** One training job on the connected volunteers, on the data set of `seed`, and its reference run. */
async function trainingJob(
  api: ReturnType<typeof apiClient>, plan: TrainingPlan, program: string, upload: (kind: string, body: string, name: string) => Promise<string>, seed: number,
): Promise<TrainingJob> {
  const csv: string = makeClassification({ rows: plan.rows, features: plan.features, seed });
  const data = await upload("data", csv, `train-${seed}.csv`);
  const params = { lr: 0.5 };
  const t0 = Date.now();
  const { id } = await api.jobs.submit.mutate({
    kernel: "program", program, input: { mode: "csv", data }, chunks: plan.shards, merge: "trimmed-mean", rounds: plan.rounds, params,
    cpuSecondsPerUnit: 0.01, replication: { replicas: 1, adaptive: false },
  } as never);
  // Waited for as `tabgrid submit --wait` does (every 200 ms): the job's own end time gives the
  // wall time, so polling faster would only add the server work of each poll to every round.
  let job = await api.jobs.get.query({ id });
  while (job.state === "running") {
    await sleep(200);
    job = await api.jobs.get.query({ id });
  }
  const wallMs = new Date(job.finishedAt ?? Date.now()).getTime() - t0;
  if (job.state !== "completed") throw new Error(`the training job ${job.state}: ${job.error}`);
  const reference = await referenceRun({ program: PROGRAM, csv, shards: plan.shards, merge: "trimmed-mean", params, rounds: plan.rounds });
  const latencies = job.rounds.map((r) => r.latencyMs ?? NaN);
  return {
    ...plan, rounds_ms: summarize(latencies.slice(1)), firstRoundMs: latencies[0], wallMs: Math.round(wallMs), referenceMs: Math.round(reference.ms),
    budgetMs: Math.round(1.2 * reference.ms + 10 * plan.rounds), loss: job.rounds.at(-1)!.stats.loss, referenceLoss: reference.rounds.at(-1)!.metrics.loss,
  };
}
