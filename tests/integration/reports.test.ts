import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUserWithKey, repoRoot, startTestServer, type TestServer } from "../helpers/server";
import { trpc, trpcError } from "../helpers/clients";

const fixtures = path.join(repoRoot, "tests", "fixtures", "reports");
const BENCH = "bench-2026-11-21T10-17-25Z";
const STRESS = "stress-2026-11-21T11-02-10Z";
const BROKEN = "bench-2026-11-20T09-00-00Z";
const PARTIAL = "bench-2026-11-19T08-00-00Z";
const HUGE = "stress-2026-11-18T00-00-00Z";
const MD_ONLY = "stress-2026-11-17T00-00-00Z";

let srv: TestServer;
let dir: string;
let admin: Awaited<ReturnType<typeof createUserWithKey>>;
let user: Awaited<ReturnType<typeof createUserWithKey>>;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-reports-"));
  for (const f of fs.readdirSync(fixtures)) fs.copyFileSync(path.join(fixtures, f), path.join(dir, f));
  // What an interrupted or foreign run can leave behind.
  fs.writeFileSync(path.join(dir, `${BROKEN}.json`), '{"meta": {"kind": "bench"'); // cut off mid-write
  fs.writeFileSync(path.join(dir, `${BROKEN}.md`), "# Benchmark\n");
  fs.writeFileSync(path.join(dir, `${PARTIAL}.json`), JSON.stringify({ meta: { kind: "bench", mode: 3 }, summary: { dispatch_tasks_per_s: "fast" }, targets: [{ target: 1 }, "x"], throughput: "none", timeline: [{ t: 1, cpuPercent: "high" }] }));
  fs.writeFileSync(path.join(dir, `${HUGE}.json`), "");
  fs.truncateSync(path.join(dir, `${HUGE}.json`), 21 * 1024 * 1024); // sparse: no 21 MB written
  fs.writeFileSync(path.join(dir, `${MD_ONLY}.md`), "# Stress\n");
  fs.writeFileSync(path.join(dir, "notes.txt"), "not a report");
  fs.writeFileSync(path.join(dir, "bench-latest.json"), "{}");
  fs.writeFileSync(path.join(path.dirname(dir), "bench-2026-01-01T00-00-00Z.json"), "{}"); // outside, next door

  srv = await startTestServer({ REPORTS_DIR: dir });
  admin = await createUserWithKey(srv.deps, "admin@example.com"); // the first account is the admin
  user = await createUserWithKey(srv.deps, "user@example.com");
});

afterAll(async () => {
  await srv?.close();
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(path.join(path.dirname(dir), "bench-2026-01-01T00-00-00Z.json"), { force: true });
});

describe("benchmark and stress reports", () => {
  it("lists every report newest first, with its headline figures, and broken ones as broken", async () => {
    const list = await trpc(srv.url, admin.apiKey).reports.list.query();
    expect(list.dir).toBe(dir);
    expect(list.reports.map((r) => r.name)).toEqual([STRESS, BENCH, BROKEN, PARTIAL, HUGE, MD_ONLY]);

    const [stress, bench, broken, partial, huge, mdOnly] = list.reports;
    expect(bench).toMatchObject({
      kind: "bench", mode: "short", commit: "cc3e611", startedAt: "2026-11-21T10:17:25.000Z", durationSeconds: 19.3, hasJson: true, hasMarkdown: true, broken: null,
      checks: { label: "targets met", passed: 0, failed: 2, unknown: 2 },
    });
    expect(bench.headline).toEqual([
      { label: "dispatch", value: 7980, unit: "tasks/s" },
      { label: "overhead p99", value: 122.207, unit: "ms" },
      // A short run has no 1,000-volunteer step: the largest one it ran stands in.
      { label: "efficiency, 50 volunteers", value: 95.53, unit: "%" },
      { label: "RSS max", value: 469.2, unit: "MB" },
    ]);
    expect(stress).toMatchObject({ kind: "stress", mode: "short", checks: { label: "scenarios passed", passed: 3, failed: 1, unknown: 1 } });
    expect(stress.headline).toContainEqual({ label: "saturation", value: 95, unit: "submissions/s" });
    expect(stress.headline).toContainEqual({ label: "server alive", value: true, unit: "" });

    expect(broken).toMatchObject({ kind: "bench", hasMarkdown: true, mode: null, headline: [] });
    expect(broken.broken).toMatch(/does not parse/);
    expect(partial).toMatchObject({ broken: null, mode: null, headline: [], checks: { passed: 0, failed: 0, unknown: 2 } });
    expect(huge.broken).toMatch(/21 MB, over the 20 MB/);
    expect(mdOnly).toMatchObject({ hasJson: false, hasMarkdown: true });
    expect(mdOnly.broken).toMatch(/no JSON file/);
  });

  it("reads one report: the JSON as written, a view for the charts and the Markdown", async () => {
    const api = trpc(srv.url, admin.apiKey);
    const bench = await api.reports.get.query({ name: BENCH });
    expect(bench.json).toEqual(JSON.parse(fs.readFileSync(path.join(fixtures, `${BENCH}.json`), "utf8")));
    expect(bench.markdown).toBe(fs.readFileSync(path.join(fixtures, `${BENCH}.md`), "utf8"));
    expect(bench.error).toBeNull();
    expect(bench.meta).toMatchObject({ kind: "bench", commit: "cc3e611", machine: { cpus: 2 } });
    if (bench.view?.kind !== "bench") throw new Error("expected a bench view");
    const b = bench.view.data;
    expect(b.targets).toHaveLength(4);
    expect(b.targets[0]).toEqual({ target: "dispatch throughput, trivial tasks", goal: "≥ 20,000 tasks/s", value: "7,980 tasks/s", met: false });
    expect(b.throughput.map((t) => t.volunteers)).toEqual([1, 10, 50]);
    expect(b.overhead[0]).toMatchObject({ load: 0.5, summary: { count: 3987 } });
    expect(b.overhead[0].histogram.length).toBeGreaterThan(10);
    expect(b.efficiency.map((e) => e.volunteers)).toEqual([10, 50]);
    expect(b.phases[0].name).toBe("dispatch, 1 volunteer");
    expect(b.timeline[0]).toEqual({ t: 2.26, cpuPercent: 118.8, rssMb: 278, lagP99Ms: null, lagMaxMs: null });
    expect(b.summary).not.toHaveProperty("efficiency_by_volunteers"); // nested: in the JSON, not among the summary's figures

    const stress = await api.reports.get.query({ name: STRESS });
    if (stress.view?.kind !== "stress") throw new Error("expected a stress view");
    const s = stress.view.data;
    expect(s.scenarios.map((x) => [x.name, x.passed])).toEqual([
      ["submission ramp", true], ["connection ramp", true], ["connection burst", true], ["oversized frames", false], ["slow consumers", null],
    ]);
    expect(s.scenarios[0].series[0]).toEqual({ t: 0, offeredPerSecond: 10, acceptedPerSecond: 10, p99Ms: 12, refused: 0 });
    expect(s.scenarios[1].series[0]).toHaveProperty("step", 1);
    expect(s.scenarios[3].stats).toMatchObject({ passed_budget: false, admin_max_ms: 1204.6 });
    expect(s.shed).toEqual({ connections: 500, submissions: 241, commit_backlog: 12 });
    expect(s.health).toMatchObject({ probes: 40, failures: 0 });
    expect(s.health.series).toHaveLength(40);
    expect(stress.markdown).toMatch(/^# Stress/);
  });

  it("reads what it can of a damaged report instead of failing", async () => {
    const api = trpc(srv.url, admin.apiKey);
    const broken = await api.reports.get.query({ name: BROKEN });
    expect(broken).toMatchObject({ json: null, view: null, meta: null, markdown: "# Benchmark\n" });
    expect(broken.error).toMatch(/does not parse/);

    const partial = await api.reports.get.query({ name: PARTIAL });
    if (partial.view?.kind !== "bench") throw new Error("expected a bench view");
    expect(partial.view.data).toMatchObject({ throughput: [], overhead: [], phases: [], summary: { dispatch_tasks_per_s: "fast" } });
    expect(partial.view.data.meta.mode).toBeNull();
    expect(partial.view.data.targets).toEqual([{ target: "", goal: "", value: "", met: null }]);
    expect(partial.view.data.timeline).toEqual([{ t: 1, cpuPercent: null, rssMb: null, lagP99Ms: null, lagMaxMs: null }]);

    expect((await api.reports.get.query({ name: HUGE })).error).toMatch(/over the 20 MB/);
    expect(await api.reports.get.query({ name: MD_ONLY })).toMatchObject({ json: null, markdown: "# Stress\n" });
  });

  it("takes a report's name, never a path", async () => {
    const api = trpc(srv.url, admin.apiKey);
    for (const name of ["../bench-2026-01-01T00-00-00Z", "bench-2026-11-21T10-17-25Z.json", "bench-../../etc/passwd", "/etc/passwd", "bench-latest", "notes", "bench-", ""]) {
      expect(await trpcError(api.reports.get.query({ name })), name).toMatchObject({ code: "BAD_REQUEST" });
    }
    expect(await trpcError(api.reports.get.query({ name: "stress-2099-01-01T00-00-00Z" }))).toMatchObject({ code: "NOT_FOUND", httpStatus: 404 });
  });

  it("is for admins only", async () => {
    expect(await trpcError(trpc(srv.url, user.apiKey).reports.list.query())).toMatchObject({ code: "FORBIDDEN", httpStatus: 403 });
    expect(await trpcError(trpc(srv.url, user.apiKey).reports.get.query({ name: BENCH }))).toMatchObject({ code: "FORBIDDEN" });
    expect(await trpcError(trpc(srv.url).reports.list.query())).toMatchObject({ code: "UNAUTHORIZED" });
  });

  it("shows an empty list when the reports directory does not exist yet", async () => {
    const other = await startTestServer({ REPORTS_DIR: path.join(dir, "never-made") });
    try {
      const key = (await createUserWithKey(other.deps, "admin@example.com")).apiKey;
      expect(await trpc(other.url, key).reports.list.query()).toEqual({ dir: path.join(dir, "never-made"), reports: [], notListed: 0 });
    } finally {
      await other.close();
    }
  });
});
