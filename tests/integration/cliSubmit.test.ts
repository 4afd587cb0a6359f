import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUserWithKey, runCli, startCliVolunteer, startTestServer, waitFor, type CliVolunteer, type TestServer } from "../helpers/server";

// `tabgrid submit --program` as a user types it: negative ranges, numbers that cannot be
// right, and errors that name the file the user uploaded.
describe("tabgrid submit --program", () => {
  let srv: TestServer;
  let user: Awaited<ReturnType<typeof createUserWithKey>>;
  let volunteers: CliVolunteer[] = [];
  let dir: string;
  const file = (name: string, text: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  };
  const submit = (args: string[]) => runCli(["submit", ...args, "--url", srv.url, "--api-key", user.apiKey]);
  const counts = async () => ({ jobs: await srv.deps.db.job.count(), programs: await srv.deps.db.program.count(), data: await srv.deps.db.dataFile.count() });

  beforeAll(async () => {
    // A unit that errored on every volunteer fails its job after 1 s, not 15.
    srv = await startTestServer({ ERROR_WAIT_SECONDS: "1" });
    dir = fs.mkdtempSync(path.join(srv.dir, "files-"));
    user = await createUserWithKey(srv.deps, "cli@example.com");
    volunteers = [startCliVolunteer(srv.url, 1, { dir: srv.dir }), startCliVolunteer(srv.url, 1, { dir: srv.dir })];
    await waitFor(() => srv.deps.coordinator.volunteers().length === 2, 30_000, "two volunteers");
  }, 40_000);
  afterAll(async () => {
    await Promise.all(volunteers.map((v) => v.stop()));
    await srv?.close();
  });

  it("takes a range that starts below zero, as --range -5:5 and as --range=-5:5", async () => {
    const prog = file("numbers.js", "export function run({ start, end }) {\n  const out = [];\n  for (let i = start; i < end; i++) out.push(i);\n  return out;\n}\n");
    for (const range of [["--range", "-5:5"], ["--range=-5:5"]]) {
      const r = await submit(["--program", prog, ...range, "--chunks", "2", "--wait", "--json"]);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ status: "completed", result: [[-5, -4, -3, -2, -1], [0, 1, 2, 3, 4]] });
    }
  }, 60_000);

  it("says what is wrong with a block size, chunk count or time limit that cannot be right, and submits nothing", async () => {
    const prog = file("echo.js", "export function run(x) { return x.length; }\n");
    const data = file("data.bin", "0123456789");
    const before = await counts();
    const cases: Array<[string[], string]> = [
      [["--blocks", data, "--block-size", "0"], '--block-size must be a whole number of at least 1 (got "0")'],
      [["--blocks", data, "--block-size", "-4"], '--block-size must be a whole number of at least 1 (got "-4")'],
      [["--blocks", data, "--block-size", "1.5"], '--block-size must be a whole number (got "1.5")'],
      [["--blocks", data, "--block-size", "lots"], '--block-size must be a whole number (got "lots")'],
      [["--blocks", data], "--blocks needs --block-size BYTES"],
      [["--range", "0:10", "--chunks", "0"], '--chunks must be a whole number of at least 1 (got "0")'],
      [["--range", "0:10", "--chunks", "-2"], '--chunks must be a whole number of at least 1 (got "-2")'],
      [["--range", "0:10", "--replicas", "0"], '--replicas must be a whole number of at least 1 (got "0")'],
      [["--range", "0:10", "--time-limit", "0"], '--time-limit must be a number of seconds above 0 and at most 3600 (got "0")'],
      [["--range", "0:10", "--cpu-seconds", "soon"], '--cpu-seconds must be a number of seconds above 0 and at most 3600 (got "soon")'],
      [["--range", "5"], "--range is START:END, e.g. 0:1000000"],
      [["--range", "0:10", "--output-limit", "lots"], '--output-limit must be a size of at least 16 bytes, e.g. 65536, 64K or 2M (got "lots")'],
      [["--range", "0:10", "--output-limit", "0"], '--output-limit must be a size of at least 16 bytes, e.g. 65536, 64K or 2M (got "0")'],
      [["--range", "0:10", "--output-limit", "15"], '--output-limit must be a size of at least 16 bytes, e.g. 65536, 64K or 2M (got "15")'],
      [["--range", "0:10", "--output-limit", "16.5"], '--output-limit must be a size of at least 16 bytes, e.g. 65536, 64K or 2M (got "16.5")'],
    ];
    for (const [args, message] of cases) {
      const r = await submit(["--program", prog, ...args]);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr, args.join(" ")).toContain(`tabgrid submit: ${message}`);
    }
    expect(await counts()).toEqual(before);
  }, 60_000);

  it("bounds a program job's outputs with --output-limit: an answer over it is the task's error", async () => {
    const prog = file("wide.js", "export function run() { return 'x'.repeat(2000); }\n");
    const within = await submit(["--program", prog, "--range", "0:2", "--chunks", "2", "--replicas", "1", "--output-limit", "4K", "--wait", "--json"]);
    expect(within.code, within.stderr).toBe(0);
    expect(JSON.parse(within.stdout)).toMatchObject({ status: "completed", result: ["x".repeat(2000), "x".repeat(2000)] });
    const over = await submit(["--program", prog, "--range", "0:1", "--chunks", "1", "--replicas", "1", "--output-limit", "1K", "--wait", "--json"]);
    expect(JSON.parse(over.stdout)).toMatchObject({ status: "failed", error: expect.stringContaining("output of 2,002 bytes is over the job's limit of 1,024 bytes a unit (outputLimitBytes)") });
  }, 60_000);

  it("names the uploaded file in a program's errors: when it does not compile, and when it throws", async () => {
    const broken = file("broken-prog.js", "export function run(x) {\n  return x +;\n}\n");
    const compile = await submit(["--program", broken, "--range", "0:4", "--chunks", "2"]);
    expect(compile.code).toBe(1);
    expect(compile.stderr).toMatch(/broken-prog\.js:2:\d+: Unexpected ";"/);
    expect(compile.stderr).not.toContain("program.js");

    // The throw is on line 5 of the file; the compiled script volunteers run has it elsewhere.
    const thrower = file("my prog.js", [
      "// Fails on the unit that holds 3.",
      "const limit = 3;",
      "export function run({ start, end }) {",
      "  for (let i = start; i < end; i++) {",
      "    if (i === limit) throw new RangeError(`${i} is not allowed`);",
      "  }",
      "  return end - start;",
      "}",
      "",
    ].join("\n"));
    // One replica: the unit may fail on the same host until it has used up its errors.
    const r = await submit(["--program", thrower, "--range", "0:6", "--chunks", "2", "--replicas", "1", "--wait", "--json"]);
    expect(r.code).toBe(1);
    const job = JSON.parse(r.stdout);
    expect(job.status).toBe("failed");
    expect(job.error).toMatch(/RangeError: 3 is not allowed \(at my_prog\.js:5:\d+\)/);
    expect(job.error).not.toContain("compiled program");
  }, 90_000);
});
