import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { repoRoot } from "../helpers/server";
import { testEngine } from "../helpers/testDb";

// `npm run bench -- --short` end to end, so the benchmark cannot rot: a real server process,
// headless volunteers over real WebSockets, a report written. Figures are checked for sanity
// only; the speed targets live in the full run (`npm run bench`, docs/performance.md).

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-bench-test-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// On PostgreSQL, the bench's server runs on a database of its own on the tests' server.
const dbArgs = testEngine() === "postgres" ? ["--db", "postgres", "--pg-url", process.env.TEST_DATABASE_URL!] : [];

function runBench(args = ["--short", "--json", "--ui", "off", ...dbArgs]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, REPORTS_DIR: dir };
  for (const k of Object.keys(env)) if (k.startsWith("VITEST") || k === "NODE_OPTIONS") delete (env as Record<string, unknown>)[k];
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", "bench/bench.ts", ...args], { cwd: repoRoot, env, timeout: 150_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

describe("npm run bench -- --short", () => {
  it("measures every phase against a live server and writes a JSON and a Markdown report", async () => {
    const run = await runBench();
    expect(run.code, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout.trim().split("\n").at(-1)!);
    expect(summary.server_alive).toBe(true);
    expect(summary.db).toBe(testEngine());
    expect(summary.volunteer_errors).toBe(0);
    expect(summary.dispatch_tasks_per_s).toBeGreaterThan(100);
    expect(summary.overhead_p99_ms).toBeGreaterThan(0);
    expect(summary.overhead_p99_ms).toBeGreaterThanOrEqual(summary.overhead_p50_ms);
    // The bare-transport ceiling ran against the same fleet, and the coordinator is measured against it.
    expect(summary.ceiling_tasks_per_s).toBeGreaterThan(summary.dispatch_tasks_per_s);
    expect(summary.dispatch_share_of_ceiling).toBeCloseTo(summary.dispatch_tasks_per_s / summary.ceiling_tasks_per_s, 2);
    // The fixed-rate phase: the whole fleet (50 here) at 1,000 tasks/s, one thread each.
    expect(summary.overhead_1000_per_s_volunteers).toBe(50);
    expect(summary.overhead_p99_ms_1000_per_s).toBeGreaterThanOrEqual(summary.overhead_p50_ms_1000_per_s);
    expect(summary.overhead_p50_ms_1000_per_s).toBeGreaterThan(0);
    for (const key of ["server_rss_mb_connected", "server_rss_mb_connected_settled", "server_rss_mb_max", "calc_p99_ms", "job_submit_p50_ms"]) expect(summary[key], key).toBeGreaterThan(0);
    // Every 100 ms task finished, in well under twice the ideal time.
    for (const e of Object.values(summary.efficiency_by_volunteers) as number[]) expect(e).toBeGreaterThan(0.5);
    expect(summary.calc_p50_ms).toBeGreaterThan(0);
    expect(summary.server_rss_mb_idle).toBeGreaterThan(10);
    // The full-run figures are keys too (null: the short run has no 1,000 volunteers).
    expect(summary).toHaveProperty("efficiency_1000_volunteers", null);
    expect(summary).toHaveProperty("server_rss_mb_1000_volunteers", null);

    // The training phase: an iterative program's rounds on CLI volunteers, trained to the one-process run's loss.
    expect(summary.round_p50_ms).toBeGreaterThan(0);
    expect(summary.round_p99_ms).toBeGreaterThanOrEqual(summary.round_p50_ms);
    expect(summary.training_reference_ms).toBeGreaterThan(0);
    expect(summary.training_wall_ms).toBeGreaterThan(0);
    // And the same volunteers' next job, on other data.
    expect(summary.round_p99_ms_next_job).toBeGreaterThanOrEqual(summary.round_p50_ms_next_job);
    expect(summary.round_p50_ms_next_job).toBeGreaterThan(0);
    expect(summary.training_wall_ms_next_job).toBeGreaterThan(0);

    expect(path.dirname(summary.report)).toBe(dir);
    const report = JSON.parse(fs.readFileSync(summary.report, "utf8"));
    expect(report.training.loss).toBe(report.training.referenceLoss);
    expect(report.training.next.loss).toBe(report.training.next.referenceLoss);
    expect(report.training.next.loss).not.toBe(report.training.loss);
    expect(report.meta).toMatchObject({ kind: "bench", mode: "short" });
    expect(report.throughput.map((t: { volunteers: number }) => t.volunteers)).toEqual([1, 10, 50]);
    expect(report.overhead[0].summary.count).toBeGreaterThan(100);
    expect(report.ceiling.map((c: { volunteers: number }) => c.volunteers)).toEqual([1, 10, 50]);
    // An open model at 1,000/s for a second past the warm-up: about 700 tasks, each counted.
    expect(report.fixedRate.achievedPerSecond).toBeGreaterThan(500);
    expect(report.fixedRate.summary.count).toBeGreaterThan(300);
    // Ten jobs of 16 chunks in the one-second submission phase, each answered.
    expect(report.smallJobs).toMatchObject({ requests: 10, failed: 0 });
    expect(summary.job_submit_p50_ms).toBe(Math.round(report.smallJobs.summary.p50 * 10) / 10);
    expect(report.timeline.length).toBeGreaterThan(5);
    // Where each efficiency phase's makespan went: every volunteer ran its share (5 tasks, ringers
    // aside), and each thread waited at least for its first task.
    for (const e of report.efficiency as Array<{ tasksPerVolunteer: [number, number]; gapMsPerVolunteer: number; gapP99Ms: number }>) {
      expect(e.tasksPerVolunteer[0]).toBeGreaterThanOrEqual(1);
      expect(e.tasksPerVolunteer[1]).toBeGreaterThanOrEqual(5);
      expect(e.gapMsPerVolunteer).toBeGreaterThan(0);
      expect(e.gapP99Ms).toBeGreaterThan(0);
    }
    const md = fs.readFileSync(summary.report.replace(/\.json$/, ".md"), "utf8");
    expect(md).toMatch(/## Targets/);
    expect(md).toMatch(/## Dispatch-to-result overhead/);
    expect(md).toMatch(/## Bare-transport ceiling/);
  }, 180_000);

  it("answers a bad flag with the usage and exit status 2, before starting anything", async () => {
    for (const args of [["--nope"], ["--seconds", "soon"], ["--ui", "maybe"], ["--nodes", "2"]]) {
      const run = await runBench(args);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stderr).toMatch(/^npm run bench: /);
      expect(run.stderr).not.toMatch(/\bat .*\.ts:\d+/); // no stack trace
    }
    const help = await runBench(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--nodes N/);
  });
});
