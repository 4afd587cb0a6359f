import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { referenceRun } from "../../bench/lib/referenceRun";
import { auditLedger } from "../../server/services/credits/ledger";
import { aggregate } from "../../server/services/programs/aggregate";
import { parseCsv, shardRows } from "../../server/services/programs/csvShards";
import { inFirstStep } from "../../server/services/jobs/submit";
import { roundJobId } from "../../server/services/jobs/rounds";
// @ts-expect-error: a plain ES module of the examples, without types
import { makeClassification } from "../../examples/js/make-classification.mjs";
import { RawVolunteer, trpc } from "../helpers/clients";
import { startVolunteer, type FleetVolunteer } from "../helpers/fleet";
import { createCaller } from "../../server/api/root";
import { createContextInner } from "../../server/api/trpc";
import { mergeRounds } from "../../app/(portal)/jobs/[id]/mergeRounds";
import { createUserWithKey, repoRoot, runCli, startCliVolunteer, startTestServer, waitFor, type CliVolunteer, type TestServer } from "../helpers/server";

// Iterative programs end to end: the logistic-regression example trained by data-parallel
// gradient descent on real CLI volunteers (shards cached, weights broadcast each round, the
// gradients merged by a trimmed mean, the program's own step on the server), compared with a
// single-process run of the same algorithm on the same shards.

const PROGRAM = path.join(repoRoot, "examples", "js", "logreg.js");
const CSV: string = makeClassification({ rows: 4000, features: 6, seed: 7 });
const SHARDS = 8;
const PARAMS = { lr: 0.8 };

describe("iterative programs: data-parallel training", () => {
  let srv: TestServer;
  let user: Awaited<ReturnType<typeof createUserWithKey>>;
  let volunteers: CliVolunteer[] = [];
  let program: string;
  let data: string;
  let silentRuns = 0;

  const post = async (kind: "programs" | "data", body: string, name: string) => {
    const res = await fetch(`${srv.url}/api/${kind}?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${user.apiKey}` }, body });
    expect(res.status, await res.clone().text()).toBe(201);
    return ((await res.json()) as { hash: string }).hash;
  };

  beforeAll(async () => {
    srv = await startTestServer();
    user = await createUserWithKey(srv.deps, "trainer@example.com");
    // Signed in to two accounts of their own (not the consumer's): an audit that disagrees
    // with two signed-in accounts is evidence of the program, not of them (auditEvidence.ts).
    const crew = [await createUserWithKey(srv.deps, "crew1@example.com"), await createUserWithKey(srv.deps, "crew2@example.com")];
    volunteers = [0, 1, 2].map((i) => startCliVolunteer(srv.url, 1, { dir: srv.dir, apiKey: crew[i % 2]!.apiKey }));
    await waitFor(() => srv.deps.coordinator.volunteers().length === 3, 30_000, "three volunteers");
    const fs = await import("node:fs");
    program = await post("programs", fs.readFileSync(PROGRAM, "utf8"), "logreg.js");
    data = await post("data", CSV, "data.csv");
  }, 60_000);
  afterAll(async () => {
    await Promise.all(volunteers.map((v) => v.stop()));
    await srv?.close();
  });

  const submit = (rounds: number, extra: Record<string, unknown> = {}) =>
    trpc(srv.url, user.apiKey).jobs.submit.mutate({
      kernel: "program", program, input: { mode: "csv", data }, chunks: SHARDS, merge: "trimmed-mean", rounds, params: PARAMS,
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001, ...extra,
    } as never);

  async function finished(id: string, timeoutMs = 60_000) {
    const api = trpc(srv.url, user.apiKey);
    await waitFor(async () => ["completed", "failed", "cancelled"].includes((await api.jobs.get.query({ id })).state), timeoutMs, `job ${id}`);
    return api.jobs.get.query({ id });
  }

  it("trains to the very weights of a single-process run, every round on the job page", async () => {
    const rounds = 12;
    const { id } = await submit(rounds);
    const job = await finished(id);
    expect(job.state, job.error ?? "").toBe("completed");
    expect(job.round).toBe(rounds);
    expect(job.maxRounds).toBe(rounds);
    const reference = await referenceRun({ program: PROGRAM, csv: CSV, shards: SHARDS, merge: "trimmed-mean", params: PARAMS, rounds });
    // Every shard arrived every round: the same bits.
    const result = await trpc(srv.url, user.apiKey).jobs.result.query({ id });
    expect(result).toEqual(reference.result);
    expect(job.rounds.map((r) => r.stats)).toEqual(reference.rounds.map((r) => r.metrics));
    const losses = job.rounds.map((r) => r.stats.loss);
    expect(losses[0]).toBeCloseTo(Math.LN2, 4); // weights of ±1e-6
    expect(losses.at(-1)!).toBeLessThan(losses[0] * 0.8);
    for (const r of job.rounds) expect(r.latencyMs).toBeGreaterThanOrEqual(0);
    console.log("round latencies", job.rounds.map((r) => r.latencyMs));
    // A watcher that has the first rounds asks for the rest only; the job's figures are the same.
    const api = trpc(srv.url, user.apiKey);
    const tail = await api.jobs.get.query({ id, roundsAfter: rounds - 3 });
    expect(tail.rounds).toEqual(job.rounds.slice(-3));
    expect(tail).toMatchObject({ round: rounds, roundsAfter: rounds - 3, progress: job.progress, results: job.results, cost: job.cost });
    expect(await api.jobs.get.query({ id, roundsAfter: rounds })).toMatchObject({ rounds: [], round: rounds });
    expect(job.roundsAfter).toBeNull();
    await expect(api.jobs.get.query({ id, roundsAfter: -1 })).rejects.toThrow();
  });

  it("jobs.watch sends every round once: after its first update, only the rounds after the last ended one", async () => {
    // Long enough to be watched for a while: updates come at most every 200 ms, and 40 rounds
    // took ~250 ms on a fast machine.
    const rounds = 150;
    const { id } = await submit(rounds);
    const caller = createCaller(createContextInner(srv.deps, { id: user.user.id, email: user.user.email, role: user.user.role }));
    const updates: Array<{ state: string; round: number | null; roundsAfter: number | null; rounds: Array<{ round: number; finishedAt: Date | string | null }> }> = [];
    for await (const job of await caller.jobs.watch({ id })) updates.push(job as (typeof updates)[number]);
    const job = await finished(id);
    expect(job.state, job.error ?? "").toBe("completed");
    expect(updates.at(-1)!.state).toBe("completed");
    expect(updates[0].roundsAfter).toBeNull();
    // The job ran while watched: once a round had ended, each update carried the rounds after it.
    const later = updates.filter((u) => u.roundsAfter !== null);
    expect(later.length).toBeGreaterThan(1);
    for (const u of later) for (const x of u.rounds) expect(x.round).toBeGreaterThan(u.roundsAfter!);
    let held: Array<{ round: number }> = [];
    for (const u of updates) held = mergeRounds(held, u);
    expect(JSON.parse(JSON.stringify(held))).toEqual(JSON.parse(JSON.stringify(job.rounds)));
    // Each round is sent once, but for the one running, sent again once it ended.
    expect(updates.reduce((n, u) => n + u.rounds.length, 0)).toBeLessThanOrEqual(rounds + updates.length);
    // A stepped round's row keeps neither the state it started from nor, but for the last, its step.
    const stored = await srv.deps.db.jobRound.findMany({ where: { jobId: id }, select: { round: true, state: true, next: true }, orderBy: { round: "asc" } });
    expect(stored).toHaveLength(rounds);
    expect(stored.filter((r) => r.state !== "null").map((r) => r.round)).toEqual([]);
    expect(stored.filter((r) => r.next !== null).map((r) => r.round)).toEqual([rounds]);
    // A stepped round's units keep their outputs, not their inputs (each carried the round's
    // broadcast); the last round's units read the shards, one blob each.
    const units = await srv.deps.db.workUnit.findMany({ where: { jobId: id }, select: { round: true, input: true, output: true } });
    expect(units).toHaveLength(rounds * SHARDS);
    expect(units.filter((u) => u.output === null)).toEqual([]);
    expect(units.filter((u) => u.input !== "null").map((u) => u.round)).toEqual(Array(SHARDS).fill(rounds));
    expect(new Set(units.filter((u) => u.round === rounds).map((u) => (JSON.parse(u.input) as { blob: string }).blob)).size).toBe(SHARDS);
    // And it stays on the volunteer that fetched it (locality scheduling): from one round to
    // the next a shard goes to another volunteer only when its holder was slow to ask (250 ms).
    // Without locality most of them moved (a unit went to whoever asked first).
    const computed = await srv.deps.db.result.findMany({ where: { jobId: id, state: "valid" }, select: { volunteerId: true, unit: { select: { idx: true, round: true } } } });
    const by = new Map(computed.map((r) => [`${r.unit.round}:${r.unit.idx}`, r.volunteerId]));
    let moves = 0;
    for (let round = 2; round <= rounds; round++) for (let i = 0; i < SHARDS; i++) if (by.get(`${round}:${i}`) !== by.get(`${round - 1}:${i}`)) moves++;
    expect(moves, "shards computed by another volunteer than in the round before").toBeLessThanOrEqual(Math.ceil(0.1 * SHARDS * (rounds - 1)));
    expect(await auditLedger(srv.deps.db)).toMatchObject({ ok: true });
    // The server audited the honest volunteers' gradients (QuickJS against V8) and found them right.
    await srv.deps.coordinator.drain();
    const hosts = await srv.deps.db.reliability.findMany({ where: { id: { startsWith: "host:" } } });
    expect(hosts.reduce((s, h) => s + h.spotChecks, 0), "audits passed").toBeGreaterThanOrEqual(3);
    expect(hosts.filter((h) => h.bannedUntil || h.invalid > 0)).toEqual([]);
  }, 90_000);

  it("stops a job's rounds, with the reason, once the disk is at its floor", async () => {
    const { id } = await submit(200);
    const api = trpc(srv.url, user.apiKey);
    await waitFor(async () => ((await api.jobs.get.query({ id })).round ?? 0) >= 3, 30_000, "round 3");
    const floor = srv.deps.env.UPLOAD_DISK_FLOOR_BYTES;
    srv.deps.env.UPLOAD_DISK_FLOOR_BYTES = Number.MAX_SAFE_INTEGER; // no disk has that much free
    try {
      const job = await finished(id);
      expect(job.state).toBe("failed");
      expect(job.error).toMatch(/^The server is short of disk space \(.+ free\); it stores no more uploads, inputs or rounds until its administrator makes room\. The job stopped after round \d+\.$/);
      expect(job.rounds.length).toBeLessThan(200);
    } finally {
      srv.deps.env.UPLOAD_DISK_FLOOR_BYTES = floor;
    }
    expect(await auditLedger(srv.deps.db)).toMatchObject({ ok: true });
  });

  it("clusters with the k-means example, a program of its own, to the centres of a single-process run", async () => {
    // Three well-separated clusters of 400 points each, with noise from a seeded generator.
    const centres = [[0, 0], [12, 12], [0, 12]];
    let seed = 11;
    const noise = () => ((seed = (seed * 48271) % 2147483647) / 2147483647 - 0.5) * 2;
    const rows = ["x,y"];
    for (let i = 0; i < 1200; i++) rows.push(centres[i % 3].map((c) => (c + noise()).toFixed(6)).join(","));
    const csv = rows.join("\n");
    const kmeans = path.join(repoRoot, "examples", "js", "kmeans.js");
    const fs = await import("node:fs");
    const hash = await post("programs", fs.readFileSync(kmeans, "utf8"), "kmeans.js");
    const points = await post("data", csv, "points.csv");
    const params = { k: 3 };
    const api = trpc(srv.url, user.apiKey);
    const { id } = await api.jobs.submit.mutate({
      kernel: "program", program: hash, input: { mode: "csv", data: points }, chunks: 6, rounds: 30, params,
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never);
    const job = await finished(id);
    expect(job.state, job.error ?? "").toBe("completed");
    const result = (await api.jobs.result.query({ id })) as { centroids: number[][]; sizes: number[]; rounds: number };
    const reference = await referenceRun({ program: kmeans, csv, shards: 6, params, rounds: 30 });
    expect(result).toEqual(reference.result);
    // Converged before the last round allowed, each true centre found to within its noise.
    expect(result.rounds).toBeLessThan(30);
    expect(job.round).toBe(result.rounds);
    expect(result.sizes.slice().sort()).toEqual([400, 400, 400]);
    for (const c of centres) expect(Math.min(...result.centroids.map((m) => Math.hypot(m[0] - c[0], m[1] - c[1])))).toBeLessThan(0.2);
    expect(job.rounds.at(-1)!.stats.moved).toBeLessThanOrEqual(1e-6);
  }, 90_000);

  it("trains a linear regression written in WebAssembly (its step too) to the weights of a single-process run", async () => {
    // y = 2 x1 - 3 x2 + 0.5, with a little noise, from a seeded generator.
    let seed = 5;
    const uniform = () => ((seed = (seed * 48271) % 2147483647) / 2147483647) * 2 - 1;
    const rows = ["x1,x2,y"];
    for (let i = 0; i < 3000; i++) {
      const x1 = uniform(), x2 = uniform();
      rows.push([x1, x2, 2 * x1 - 3 * x2 + 0.5 + uniform() * 0.01].map((v) => v.toFixed(6)).join(","));
    }
    const csv = rows.join("\n");
    const fs = await import("node:fs");
    const hash = await post("programs", fs.readFileSync(path.join(repoRoot, "examples", "wasm", "linreg.wasm")) as never, "linreg.wasm");
    const points = await post("data", csv, "regression.csv");
    const api = trpc(srv.url, user.apiKey);
    const rounds = 40;
    const { id } = await api.jobs.submit.mutate({
      kernel: "program", program: hash, input: { mode: "csv", data: points }, chunks: 6, merge: "mean", rounds,
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never);
    const job = await finished(id);
    expect(job.state, job.error ?? "").toBe("completed");
    expect(job.round).toBe(rounds);
    const result = (await api.jobs.result.query({ id })) as { b64: string };
    const w = [...new Float64Array(new Uint8Array(Buffer.from(result.b64, "base64")).buffer)];

    // The same algorithm in one process, in the same order of operations: the same bits.
    const shards = shardRows(parseCsv(csv), 6).map((b) => new Float64Array(new Uint8Array(b).buffer));
    let ref = [0, 0, 0];
    const mses: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      const outputs = shards.map((x) => {
        const n = x.length / 3;
        const g = [0, 0, 0];
        let loss = 0;
        for (let r = 0; r < n; r++) {
          let pred = ref[2];
          for (let j = 0; j < 2; j++) pred += ref[j] * x[r * 3 + j];
          const err = pred - x[r * 3 + 2];
          for (let j = 0; j < 2; j++) g[j] += err * x[r * 3 + j];
          g[2] += err;
          loss += err * err;
        }
        return [...g, loss].map((v) => v / n);
      });
      const merged = aggregate("mean", outputs, 0) as number[];
      mses.push(merged[3]);
      ref = ref.map((wj, j) => wj - 0.5 * merged[j]);
    }
    expect(w).toEqual(ref);
    expect(job.rounds.map((r) => r.stats.mse)).toEqual(mses);
    // And it learnt the line.
    [2, -3, 0.5].forEach((want, j) => expect(Math.abs(w[j] - want)).toBeLessThan(0.05));
    expect(mses.at(-1)!).toBeLessThan(mses[0] / 100);
  }, 90_000);

  it("refuses rounds for a program without step, saying how to add one", async () => {
    const fs = await import("node:fs");
    const api = trpc(srv.url, user.apiKey);
    const upload = (file: string) => post("programs", fs.readFileSync(path.join(repoRoot, "examples", ...file.split("/"))) as never, path.basename(file));
    const job = (program: string, merge?: string) => api.jobs.submit.mutate({
      kernel: "program", program, input: { mode: "csv", data }, chunks: 4, rounds: 3, ...(merge ? { merge } : {}),
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never);
    await expect(job(await upload("js/collatz.js"))).rejects.toThrow(/exports no step, so it cannot run in rounds: add export function step\(merged, state, ctx\)/);
    await expect(job(await upload("wasm/bytesum.wasm"))).rejects.toThrow(/exports no step, so it cannot run in rounds: export a function step\(ptr: i32, len: i32\) -> i32/);
    await expect(job(await upload("wasm/linreg.wasm"), "reduce")).rejects.toThrow(/exports no reduce: merge its outputs with "concat" instead/);
  });

  it("refuses a CSV it cannot use, naming the line, charging nothing; the same file again is refused from memory", async () => {
    const api = trpc(srv.url, user.apiKey);
    // Slow-path fields throughout and a short last line: read to its end before it fails.
    const rows = Array.from({ length: 300_000 }, (_, i) => `0x1f,${i},0x${(i % 255).toString(16)}`);
    // Not named *.csv: read at the first submission, not at upload.
    const bad = await post("data", `a,b,c\n${rows.join("\n")}\n1,2\n`, "bad.txt");
    const balance = () => api.account.balance.query();
    const before = await balance();
    const submitBad = async () => {
      const t0 = performance.now();
      const error = await api.jobs.submit.mutate({
        kernel: "program", program, input: { mode: "csv", data: bad }, chunks: 4, rounds: 3, params: PARAMS,
        replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
      } as never).then(() => undefined, (e: Error) => e.message);
      return { error, ms: performance.now() - t0 };
    };
    const first = await submitBad();
    expect(first.error).toBe("The CSV file cannot be used: line 300002 has 2 fields, the header 3");
    const again = await submitBad();
    expect(again.error).toBe(first.error);
    expect(again.ms, `first ${first.ms.toFixed(0)} ms, again ${again.ms.toFixed(0)} ms`).toBeLessThan(first.ms / 3);
    expect(await balance()).toBe(before);
  });

  it("reads a file named *.csv at its upload: the answer says how it reads, and a submission takes the table kept", async () => {
    const api = trpc(srv.url, user.apiKey);
    const send = async (body: string, name: string) => {
      const res = await fetch(`${srv.url}/api/data?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${user.apiKey}` }, body });
      expect(res.status).toBe(201);
      return (await res.json()) as { hash: string; csv?: { rows: number; columns: number } | { error: string } };
    };
    const rows = CSV.trim().split("\n");
    // A byte more than CSV (another file), so that nothing of it is kept from another test.
    const good = await send(`${CSV}\n`, "fresh.csv");
    expect(good.csv).toEqual({ rows: rows.length - 1, columns: rows[0].split(",").length });
    // The same bytes as `?as=csv` (the CLI's --input-csv sends that whatever the file's name).
    expect((await send(`${CSV}\n`, "fresh.data&as=csv")).csv).toEqual(good.csv);
    expect((await send(`${CSV}\n`, "fresh.data")).csv).toBeUndefined();
    const bad = await send("x,y\n1,2\n3\n", "short.csv");
    expect(bad.csv).toEqual({ error: "line 3 has 1 field, the header 2" });
    await expect(api.jobs.submit.mutate({
      kernel: "program", program, input: { mode: "csv", data: bad.hash }, chunks: 1, rounds: 3, params: PARAMS,
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never)).rejects.toThrow("The CSV file cannot be used: line 3 has 1 field, the header 2");
    const { id } = await api.jobs.submit.mutate({
      kernel: "program", program, input: { mode: "csv", data: good.hash }, chunks: SHARDS, merge: "trimmed-mean", rounds: 2, params: PARAMS,
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never);
    expect((await finished(id)).state).toBe("completed");
  });

  it("gives the step before round 1 (run at submission, free) at most 5 s, one at a time per account", async () => {
    const api = trpc(srv.url, user.apiKey);
    const spinner = await post("programs", "export const run = (x) => x;\nexport function step() { while (true) {} }", "spin.js");
    const submitSpinner = () => api.jobs.submit.mutate({
      kernel: "program", program: spinner, input: { mode: "csv", data }, chunks: 4, rounds: 3, timeLimitSeconds: 3600,
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never).then(() => "accepted", (e: Error) => e.message);
    const balance = await api.account.balance.query();
    const t0 = performance.now();
    const first = submitSpinner();
    await waitFor(() => inFirstStep(user.user.id), 20_000, "the first submission's step");
    expect(await submitSpinner()).toBe("Another of your submissions is running its program's first step. Wait for it, then submit again.");
    expect(await first).toBe("The program's step failed before the first round: time limit of 5 s exceeded");
    expect(performance.now() - t0).toBeLessThan(30_000);
    expect(await api.account.balance.query()).toBe(balance);
  }, 60_000);

  it("stops after the round in progress when its owner asks, with the last weights as its result", async () => {
    const { id } = await submit(500);
    const api = trpc(srv.url, user.apiKey);
    await waitFor(async () => (await api.jobs.get.query({ id })).rounds.filter((r) => r.finishedAt).length >= 2, 30_000, "two rounds");
    await api.jobs.stopAfterRound.mutate({ id });
    const job = await finished(id);
    expect(job.state, job.error ?? "").toBe("completed");
    expect(job.round).toBeLessThan(500);
    const result = (await api.jobs.result.query({ id })) as { w: number[] };
    expect(result.w).toHaveLength(7);
    // Refunded: the rounds it did not run.
    expect(job.cost).toBeLessThan(job.estimate / 10);
  }, 90_000);

  it("bans nobody for a program whose output depends on where it runs: its audits stop instead", async () => {
    // QuickJS on the server has no Intl; the volunteers' V8 has. Every audit disagrees: banning on
    // that alone let any consumer get honest volunteers banned with one line.
    const envProgram = await post("programs", `export function run(input, ctx) { return [ctx.broadcast.k, typeof Intl === "object" ? 1 : 0]; }
export function step(merged, state, ctx) {
  if (ctx.round === 0) return { next: { k: 0 }, state: {} };
  if (ctx.round >= 10) return { done: true, result: merged };
  return { next: { k: ctx.round }, state: {} };
}`, "env.js");
    const hosts = srv.deps.coordinator.volunteers().map((v) => `host:${v.volunteerId}`);
    const { id } = await trpc(srv.url, user.apiKey).jobs.submit.mutate({
      kernel: "program", program: envProgram, input: { mode: "csv", data }, chunks: SHARDS, merge: "mean", rounds: 10,
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never);
    const job = await finished(id);
    expect(job.state, job.error ?? "").toBe("completed");
    await srv.deps.coordinator.drain();
    expect(srv.logs.filter((l) => l.includes(`audits of job ${id} stopped: the server's own computation of its program disagreed`))).toHaveLength(1);
    const banned = await srv.deps.db.reliability.findMany({ where: { id: { in: hosts }, bannedUntil: { not: null } } });
    expect(banned.map((h) => h.id)).toEqual([]);
    expect(await srv.deps.db.result.count({ where: { jobId: id, state: "invalid" } })).toBe(0);
  }, 90_000);

  it("keeps training down a falling loss while one volunteer sends poisoned gradients, and keeps it from the job after an audit", async () => {
    // A volunteer that answers every unit with a huge gradient of the right length.
    const poisoner: FleetVolunteer = startVolunteer(srv.url, {
      name: "poisoner",
      compute: (task) => {
        const cols = ((task.params as { context?: { columns?: string[] } }).context?.columns ?? []).length;
        return { output: Array.from({ length: cols + 2 }, (_, i) => (i % 2 ? 1e6 : -1e6)), ms: 1 };
      },
    });
    try {
      await poisoner.connected();
      // The job runs until the audit's verdict keeps the poisoner out (how soon depends on the
      // audit thread's share of a loaded machine: it runs at the lowest priority), then a few
      // rounds more, and its owner stops it.
      // Each volunteer's window holds 2 of a round's 8 units: a trimmed mean that drops 2 at each end outvotes it.
      const rounds = 500;
      const { id } = await submit(rounds, { trim: 0.25 });
      const api = trpc(srv.url, user.apiKey);
      const barredLine = (l: string) => /gets no more units of job/.test(l) && l.includes(id);
      const roundNow = async () => (await srv.deps.db.workUnit.aggregate({ where: { jobId: id }, _max: { round: true } }))._max.round ?? 0;
      await waitFor(() => srv.logs.some(barredLine), 60_000, "the audit's verdict");
      // The round running at the verdict: a round starts in memory before its units' rows are
      // written (PostgreSQL's CI pass once read the round before it from the database).
      let barAt = await roundNow();
      while (srv.deps.coordinator.scheduler.jobState(roundJobId(id, barAt + 1)) !== undefined) barAt++;
      await waitFor(async () => (await roundNow()) >= Math.max(barAt + 3, 10), 30_000, "three rounds after the verdict");
      await api.jobs.stopAfterRound.mutate({ id });
      const job = await finished(id);
      expect(job.state, job.error ?? "").toBe("completed");
      expect(poisoner.computed, "the poisoner got units").toBeGreaterThan(0);
      const losses = job.rounds.map((r) => r.stats.loss);
      expect(losses.at(-1)!).toBeLessThan(losses[0] * 0.8);
      for (const w of ((await trpc(srv.url, user.apiKey).jobs.result.query({ id })) as { w: number[] }).w) expect(Math.abs(w)).toBeLessThan(10);
      // Its first accepted gradient was recomputed on the server: it got no more of the job's
      // units, and an invalid result on its record; nobody is banned for an audit (the server's
      // recompute of a consumer's program is no proof against a volunteer).
      await srv.deps.coordinator.drain();
      expect(srv.logs.filter(barredLine)).toHaveLength(1);
      const rows = await srv.deps.db.result.findMany({ where: { jobId: id, volunteerId: poisoner.identity.volunteerId }, select: { unit: { select: { round: true } } } });
      expect(rows.length).toBeGreaterThan(0);
      // Nothing of a round that started after the verdict (what it held of the current one may come back).
      expect(rows.filter((r) => r.unit.round > barAt), `barred in round ${barAt}`).toEqual([]);
      const host = await srv.deps.db.reliability.findUnique({ where: { id: `host:${poisoner.identity.volunteerId}` } });
      expect(host?.invalid).toBeGreaterThan(0);
      expect(host?.bannedUntil ?? null).toBeNull();
      expect(await srv.deps.db.reliability.count({ where: { bannedUntil: { not: null } } })).toBe(0);
    } finally {
      poisoner.kill();
    }
  }, 90_000);

  it("finishes its rounds when a volunteer is killed in the middle of one", async () => {
    const doomed = startCliVolunteer(srv.url, 1, { dir: srv.dir });
    const api = trpc(srv.url, user.apiKey);
    try {
      await waitFor(() => srv.deps.coordinator.volunteers().length === 4, 30_000, "a fourth volunteer");
      const rounds = 30;
      const { id } = await submit(rounds);
      await waitFor(async () => (await api.jobs.get.query({ id })).rounds.length >= 3, 30_000, "round 3");
      doomed.kill("SIGKILL");
      const job = await finished(id);
      expect(job.state, job.error ?? "").toBe("completed");
      expect(job.round).toBe(rounds);
      const reference = await referenceRun({ program: PROGRAM, csv: CSV, shards: SHARDS, merge: "trimmed-mean", params: PARAMS, rounds });
      expect(await api.jobs.result.query({ id })).toEqual(reference.result);
    } finally {
      await doomed.stop();
    }
  }, 90_000);

  /**
   * Runs `body` beside a volunteer that takes its tasks and never answers (a lease would hold
   * each round), given a data set of its own: the shards of `CSV` are cached on the other
   * volunteers from the earlier tests, and locality scheduling would leave them there.
   */
  async function withSilentVolunteer(body: (silent: RawVolunteer, data: { csv: string; hash: string }) => Promise<void>) {
    const csv: string = makeClassification({ rows: 4000, features: 6, seed: 8 + silentRuns++ });
    const hash = await post("data", csv, "fresh.csv");
    const silent = await RawVolunteer.connect(srv.url);
    silent.hello(1);
    await silent.next("welcome");
    try {
      await body(silent, { csv, hash });
      expect(silent.tasks().length, "the silent volunteer held units").toBeGreaterThan(0);
    } finally {
      await silent.close();
    }
  }

  it("closes each round at its share of shards, so a volunteer that never answers cannot hold it", async () => {
    await withSilentVolunteer(async (_, data) => {
      const rounds = 6;
      const { id } = await submit(rounds, { roundShare: 0.75, input: { mode: "csv", data: data.hash } });
      const job = await finished(id, 30_000);
      expect(job.state, job.error ?? "").toBe("completed");
      expect(job.round).toBe(rounds);
      // Each round closed with at least 6 of its 8 shards; the loss still fell.
      const losses = job.rounds.map((r) => r.stats.loss);
      expect(losses.at(-1)!).toBeLessThan(losses[0]);
    });
  }, 60_000);

  it("with speculate, copies a silent volunteer's unit to an idle one, and trains to the reference's weights", async () => {
    await withSilentVolunteer(async (_, data) => {
      const rounds = 5;
      const { id } = await submit(rounds, { merge: "mean", speculate: true, input: { mode: "csv", data: data.hash } });
      const job = await finished(id, 30_000);
      expect(job.state, job.error ?? "").toBe("completed");
      // Every shard arrived every round (a copy's result is the same): the very weights of one process.
      const reference = await referenceRun({ program: PROGRAM, csv: data.csv, shards: SHARDS, merge: "mean", params: PARAMS, rounds });
      expect(await trpc(srv.url, user.apiKey).jobs.result.query({ id })).toEqual(reference.result);
    });
  }, 60_000);

  it("prints each round as it ends from the CLI, then the job", async () => {
    const fs = await import("node:fs");
    const file = path.join(srv.dir, "train.csv");
    fs.writeFileSync(file, CSV);
    const r = await runCli(
      ["submit", "--program", PROGRAM, "--input-csv", file, "--chunks", "4", "--merge", "trimmed-mean", "--replicas", "1", "--rounds", "5", "--cpu-seconds", "0.001", "--params", JSON.stringify(PARAMS), "--wait", "--json"],
      { TABGRID_URL: srv.url, TABGRID_API_KEY: user.apiKey },
      60_000,
    );
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.slice(0, -1).map((l) => l.round)).toEqual([1, 2, 3, 4, 5]);
    expect(lines[0]).toMatchObject({ round: 1, loss: expect.any(Number), accuracy: expect.any(Number), latencyMs: expect.any(Number) });
    expect(lines.at(-1)).toMatchObject({ status: "completed", round: 5, result: { w: expect.any(Array) } });

    // A file that is no CSV of numbers (whatever its name) is refused at its upload, before the program is sent or a job made.
    const bad = path.join(srv.dir, "points.txt");
    fs.writeFileSync(bad, "x,y\n1,2\n3,four\n");
    const jobsBefore = await srv.deps.db.job.count();
    const refused = await runCli(["submit", "--program", PROGRAM, "--input-csv", bad, "--rounds", "5", "--cpu-seconds", "0.001"], { TABGRID_URL: srv.url, TABGRID_API_KEY: user.apiKey }, 30_000);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`${bad} cannot be used as CSV input: line 3, column 2 (y): "four" is not a number`);
    expect(await srv.deps.db.job.count()).toBe(jobsBefore);
  }, 90_000);
});
