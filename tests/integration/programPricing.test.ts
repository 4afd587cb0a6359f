import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createUserWithKey, repoRoot, runCli, startCliVolunteer, startTestServer, waitFor, type CliVolunteer, type TestServer,
} from "../helpers/server";
import { trpc } from "../helpers/clients";
import { expectSettledJob } from "../helpers/settlement";
import { auditLedger, balanceOf } from "../../server/services/credits/ledger";
import { escrowAccount, MILLI, userAccount } from "../../server/services/credits/accounts";

// A program job is priced like a kernel job: the consumer's CPU-seconds per unit at the same
// price per reference CPU-second, held in escrow, paid per validated result, and the rest
// refunded when the job ends. Real CLI volunteers compute both kinds of job.
describe("program pricing", () => {
  let srv: TestServer;
  let consumer: Awaited<ReturnType<typeof createUserWithKey>>;
  let volunteers: CliVolunteer[] = [];
  const collatz = path.join(repoRoot, "examples", "js", "collatz.js");
  // 100 credits per RCS: 5 reference CPU-ms per unit is 0.5 credits (500 millicredits).
  const PRICE = 100;
  const replication = { replicas: 2, adaptive: false };

  beforeAll(async () => {
    srv = await startTestServer({ PRICE_PER_CPU_SECOND: String(PRICE), SPOT_CHECKS: "off" });
    consumer = await createUserWithKey(srv.deps, "pricing@example.com");
    volunteers = [startCliVolunteer(srv.url, 1, { dir: srv.dir }), startCliVolunteer(srv.url, 1, { dir: srv.dir })];
    await waitFor(() => srv.deps.coordinator.volunteers().length === 2, 30_000, "two volunteers");
  });
  afterAll(async () => {
    await Promise.all(volunteers.map((v) => v.stop()));
    await srv?.close();
  });

  const cli = (args: string[]) => runCli([...args, "--url", srv.url, "--api-key", consumer.apiKey]);
  const holdOf = async (jobId: string) =>
    (await srv.deps.db.ledgerEntry.findFirstOrThrow({ where: { jobId, kind: "hold", accountId: escrowAccount(jobId) } })).amount;
  const refundOf = async (jobId: string) =>
    (await srv.deps.db.ledgerEntry.aggregate({ where: { jobId, kind: "refund", accountId: userAccount(consumer.user.id) }, _sum: { amount: true } }))._sum.amount ?? 0;

  it("holds units × paid results × CPU-seconds × price, and charges per validated result like a kernel job of the same work", async () => {
    const api = trpc(srv.url, consumer.apiKey);
    const program = { kernel: "program", input: { mode: "range" as const, start: 1, end: 3001 }, chunks: 4, cpuSecondsPerUnit: 0.005, merge: "reduce" as const, replication };
    // pi: 0.5 ms + 5 ns per sample, so 900,000 samples a unit is the same 5 reference CPU-ms.
    const kernel = { kernel: "pi", chunks: 4, params: { samples: 3_600_000, seed: 3 }, replication };
    const perResult = Math.ceil(0.005 * PRICE * MILLI);
    const expected = 4 * 2 * perResult;
    expect(perResult).toBe(500);

    const estimated = await api.jobs.estimate.query(program);
    expect(estimated).toMatchObject({ chunks: 4, cpuSeconds: 0.02, price: PRICE * MILLI, estimate: expected, replicas: 2, quorum: 2, adaptive: false });
    expect((await api.jobs.estimate.query(kernel)).estimate).toBe(expected);

    const before = await balanceOf(srv.deps.db, userAccount(consumer.user.id));
    // The CLI's --cpu-seconds feeds the same estimate, and --json reports the hold and the cost in credits.
    const run = await cli([
      "submit", "--program", collatz, "--range", "1:3001", "--chunks", "4", "--cpu-seconds", "0.005", "--merge", "reduce",
      "--replicas", "2", "--no-adaptive", "--wait", "--json",
    ]);
    expect(run.code, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out).toMatchObject({ status: "completed", chunks: 4, estimate: expected / MILLI, cost: expected / MILLI, result: { start: 2919, steps: 216 } });
    expect(await holdOf(out.id)).toBe(expected);

    const { id: kernelId } = await api.jobs.submit.mutate(kernel);
    expect(await holdOf(kernelId)).toBe(expected);
    await waitFor(async () => (await api.jobs.get.query({ id: kernelId })).state === "completed", 60_000, "the pi job");
    await srv.deps.coordinator.drain();

    // Each unit paid to exactly its quorum of valid results, at the unit's pay; the escrow empty.
    const settledProgram = await expectSettledJob(srv.deps.db, out.id, { exactQuorum: true });
    const settledKernel = await expectSettledJob(srv.deps.db, kernelId, { exactQuorum: true });
    const unitsOf = (jobId: string) => srv.deps.db.workUnit.findMany({ where: { jobId }, select: { work: true, pay: true }, orderBy: { idx: "asc" } });
    expect(await unitsOf(out.id)).toEqual(Array(4).fill({ work: 5, pay: perResult }));
    expect(await unitsOf(kernelId)).toEqual(await unitsOf(out.id));
    expect(settledProgram.job.cost).toBe(expected);
    expect(settledKernel.job.cost).toBe(expected);
    // The whole hold was spent: nothing to refund, and the owner paid exactly the two costs.
    expect(await refundOf(out.id)).toBe(0);
    expect(await balanceOf(srv.deps.db, userAccount(consumer.user.id))).toBe(before - 2 * expected);
    // The volunteers' payouts from the program job are what the owner was charged for it.
    expect([...settledProgram.paidByAccount.values()].reduce((s, x) => s + x, 0)).toBe(expected);
    expect((await auditLedger(srv.deps.db)).ok).toBe(true);
  });

  it("refunds the part of the hold that a job which fails did not spend", async () => {
    const api = trpc(srv.url, consumer.apiKey);
    const file = path.join(srv.dir, "failing.js");
    fs.writeFileSync(file, `export function run(x) { if (x === "boom") throw new Error("boom"); return x * 2; }\n`);
    const body = new Uint8Array(fs.readFileSync(file));
    const uploaded = await (await fetch(`${srv.url}/api/programs?name=failing.js`, { method: "POST", headers: { authorization: `Bearer ${consumer.apiKey}` }, body })).json();
    const before = await balanceOf(srv.deps.db, userAccount(consumer.user.id));
    // One replica: a unit that errors is retried by any volunteer, so it fails its third time.
    const { id, estimate } = await api.jobs.submit.mutate({
      kernel: "program", program: uploaded.hash, input: { mode: "json", items: [1, 2, 3, "boom"] }, cpuSecondsPerUnit: 0.01, replication: { replicas: 1 },
    });
    expect(estimate).toBe(4 * 1 * Math.ceil(0.01 * PRICE * MILLI));
    expect(await holdOf(id)).toBe(estimate);
    await waitFor(async () => (await api.jobs.get.query({ id })).state === "failed", 60_000, "the job to fail on its last unit");
    await srv.deps.coordinator.drain();

    const { job } = await expectSettledJob(srv.deps.db, id);
    expect(job.error).toContain("boom");
    // The failing unit was never paid, so some of the hold always comes back.
    expect(job.cost).toBeLessThanOrEqual(3 * 1000);
    expect(await refundOf(id)).toBe(estimate - job.cost);
    expect(await balanceOf(srv.deps.db, escrowAccount(id))).toBe(0);
    expect(await balanceOf(srv.deps.db, userAccount(consumer.user.id))).toBe(before - job.cost);
    expect((await auditLedger(srv.deps.db)).ok).toBe(true);
  });

  it("estimates refuse what submit refuses, with the same reason", async () => {
    const api = trpc(srv.url, consumer.apiKey);
    const base = { kernel: "program", input: { mode: "range" as const, start: 0, end: 3 }, chunks: 4, cpuSecondsPerUnit: 0.5 };
    const reason = async (p: Promise<unknown>) => p.then(() => "accepted", (e: Error) => e.message);
    expect(await reason(api.jobs.estimate.query(base))).toBe("The range [0, 3) has fewer numbers than the 4 chunks asked for.");
    expect(await reason(api.jobs.submit.mutate({ ...base, program: "0".repeat(64) }))).toContain(`No program ${"0".repeat(64)}`);
    expect(await reason(api.jobs.estimate.query({ ...base, chunks: 2, program: "0".repeat(64) }))).toContain(`No program ${"0".repeat(64)}`);
    expect(await reason(api.jobs.estimate.query({ ...base, chunks: 2, cpuSecondsPerUnit: 0 }))).toContain("cpuSecondsPerUnit");
  });

  it("refuses a bad --cpu-seconds before uploading anything", async () => {
    const programs = await srv.deps.db.program.count();
    const jobs = await srv.deps.db.job.count();
    for (const bad of ["0", "-1", "abc", "3601"]) {
      const r = await cli(["submit", "--program", collatz, "--range", "1:100", "--chunks", "2", `--cpu-seconds=${bad}`]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--cpu-seconds must be a number of seconds above 0 and at most 3600 (got "${bad}")`);
    }
    const kernelJob = await cli(["submit", "pi", "--chunks", "2", "--cpu-seconds", "1"]);
    expect(kernelJob.code).toBe(2);
    expect(kernelJob.stderr).toContain("--cpu-seconds prices a --program job's units");
    expect(await srv.deps.db.program.count()).toBe(programs);
    expect(await srv.deps.db.job.count()).toBe(jobs);
  });
});
