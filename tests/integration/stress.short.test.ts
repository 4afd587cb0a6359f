import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { repoRoot } from "../helpers/server";
import { testEngine } from "../helpers/testDb";

// `npm run stress -- --short` end to end: its own server process, the overload scenarios and the
// report, as a user runs it. The figures vary with the machine; what must hold is that the
// server stayed up and answered its probes, and that each kind of abuse was shed as designed.

const reportsDir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-stress-"));
afterAll(() => fs.rmSync(reportsDir, { recursive: true, force: true }));

interface Scenario {
  name: string;
  description: string;
  passed: boolean;
  findings: string[];
  stats: Record<string, number | string | boolean | null>;
}

function runStress(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, REPORTS_DIR: reportsDir };
  for (const k of Object.keys(env)) if (k.startsWith("VITEST") || k === "NODE_OPTIONS" || k.startsWith("TABGRID_")) delete env[k];
  // On PostgreSQL, the stress's server runs on a database of its own on the tests' server.
  const db = testEngine() === "postgres" ? ["--db", "postgres", "--pg-url", process.env.TEST_DATABASE_URL!] : [];
  const child = spawn("npx", ["tsx", "bench/stress.ts", "--short", "--json", ...db], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), 110_000);
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("npm run stress -- --short", () => {
  it("keeps the server up and answering while it sheds every kind of overload, and writes the report", async () => {
    const run = await runStress();
    expect(run.code, run.stderr.slice(-4000)).toBe(0);
    const lines = run.stdout.trim().split("\n");
    expect(lines, "--json prints one line").toHaveLength(1);
    const summary = JSON.parse(lines[0]) as Record<string, unknown> & { shed: Record<string, number>; report: string };

    expect(summary.server_alive).toBe(true);
    expect(summary.db).toBe(testEngine());
    expect(summary.health_probes).toBeGreaterThan(20);
    expect(summary.health_failures).toBe(0);
    // The kernel's count of connections dropped for a full accept queue, read on Linux.
    expect(summary.accept_queue_drops).toBeGreaterThanOrEqual(0);
    expect(summary.saturation_submissions_per_s).toBeGreaterThan(0);
    expect(summary.burst_accepted).toBe(summary.burst_connections);
    expect(summary.shed["connection-refused"]).toBeGreaterThan(0);
    expect(summary.shed["frame-too-large"]).toBeGreaterThan(0);
    expect(summary.shed["submission-throttled"]).toBeGreaterThan(0);

    // The report files, where REPORTS_DIR says, and the JSON the admin page renders.
    expect(path.dirname(summary.report)).toBe(reportsDir);
    const report = JSON.parse(fs.readFileSync(summary.report, "utf8")) as {
      meta: { kind: string; mode: string };
      summary: Record<string, unknown>;
      scenarios: Scenario[];
      health: { probes: number; failures: number; series: Array<{ t: number; healthMs: number | null; adminMs: number | null }> };
      timeline: Array<{ t: number; cpuPercent: number; rssMb: number }>;
      phases: Array<{ name: string; startS: number; endS: number }>;
    };
    expect(report.meta).toMatchObject({ kind: "stress", mode: "short" });
    const { report: _, ...reported } = summary;
    expect(report.summary).toEqual(reported);
    expect(report.health.series).toHaveLength(report.health.probes);
    expect(report.health.series.every((p) => p.healthMs !== null && p.adminMs !== null)).toBe(true);
    expect(report.timeline.length).toBeGreaterThan(10);
    expect(report.phases.length).toBeGreaterThan(5);
    const md = fs.readFileSync(summary.report.replace(/\.json$/, ".md"), "utf8");
    expect(md).toMatch(/^# Stress \(short\)/);
    expect(md).toContain("## What the server shed");

    const scenario = (name: string) => {
      const s = report.scenarios.find((x) => x.name === name);
      expect(s, `scenario "${name}"`).toBeDefined();
      expect(s!.findings.length).toBeGreaterThan(0);
      return s!.stats;
    };
    expect(report.scenarios.map((s) => s.name)).toEqual([
      "submission ramp", "connection ramp", "connection burst", "hostile: oversized frames", "hostile: garbage frames",
      "hostile: lease takers", "hostile: slow reader", "hostile: submission flood",
    ]);
    // Oversized frames are refused with 1009.
    expect(scenario("hostile: oversized frames").closed_1009).toBeGreaterThan(0);
    // Garbage: error frames, then 1008.
    expect(scenario("hostile: garbage frames")).toMatchObject({ close_reason: "too many invalid messages" });
    // Leases never returned expire, go back to the queue and the job still completes.
    const takers = scenario("hostile: lease takers");
    expect(takers.units_taken_first).toBeGreaterThan(0);
    expect(takers.leases_revoked).toBeGreaterThanOrEqual(takers.units_taken_first as number);
    expect(takers.job_completed).toBe(true);
    // A reader that stops reading is cut off, its leases are re-queued and its job completes.
    const slow = scenario("hostile: slow reader");
    expect(slow).toMatchObject({ cut_off: true, job_completed: true });
    // Every lease it held went back to the queue. One of its tasks may have been a ringer (a
    // known-answer task for a newcomer, which it cannot tell apart), and a ringer is no lease.
    const held = Number(slow.tasks_held);
    expect(slow.leases_requeued).toBeLessThanOrEqual(held);
    expect(slow.leases_requeued).toBeGreaterThanOrEqual(held - 1);
    // A flooding consumer gets TOO_MANY_REQUESTS; the other consumer does not notice.
    const flood = scenario("hostile: submission flood");
    expect(flood).toMatchObject({ too_many_requests_seen: true, flood_failed: 0, other_failed: 0 });
    // Every refusal the flooder saw is counted; so may be the other consumer's calls shed
    // server-wide (it came back after them), and nothing more.
    expect(flood.shed_submission_throttled).toBeGreaterThanOrEqual(flood.flood_throttled as number);
    expect(flood.shed_submission_throttled).toBeLessThanOrEqual((flood.flood_throttled as number) + (flood.other_shed_retried as number));
    // Past the connection cap: refused with 1013 and counted.
    const burst = scenario("connection burst");
    expect(burst.past_cap_refused_1013).toBe(burst.past_cap);
    expect(burst.shed_connection_refused).toBe(burst.past_cap);
  }, 120_000);
});
