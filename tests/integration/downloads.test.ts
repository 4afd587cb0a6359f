import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUserWithKey, runCli, startCliVolunteer, startTestServer, waitFor, type CliVolunteer, type TestServer } from "../helpers/server";
import { trpc, trpcError } from "../helpers/clients";
import { MAX_API_OUTPUT_BYTES } from "../../server/services/jobs/downloads";

// A job's outputs may be hundreds of MB (4 MiB a unit). units.json read them all through the
// query engine, parsed and stringified them in one reply: one request for 300 outputs of 4 MB
// held gigabytes. Downloads stream now; the API answers what fits in a reply and says where
// the rest is.
describe("downloading a job's large result and outputs", () => {
  let srv: TestServer;
  let volunteer: CliVolunteer;
  let user: Awaited<ReturnType<typeof createUserWithKey>>;
  let jobId: string;
  const UNITS = 12;
  const UNIT_CHARS = 3_000_000;

  beforeAll(async () => {
    // A unit that errored on the only volunteer fails its job after 1 s, not 15.
    srv = await startTestServer({ ERROR_WAIT_SECONDS: "1" });
    user = await createUserWithKey(srv.deps, "big@example.com");
    volunteer = startCliVolunteer(srv.url, 2, { dir: srv.dir });
    await waitFor(() => srv.deps.coordinator.volunteers().length === 1, 30_000, "a volunteer");
    // Each unit returns ~3 MB: 12 of them are more than the API answers.
    const res = await fetch(`${srv.url}/api/programs?name=big.js`, {
      method: "POST", headers: { authorization: `Bearer ${user.apiKey}` },
      body: `export function run(x) { return { x, pad: "y".repeat(${UNIT_CHARS}) }; }\n`,
    });
    const program = await res.json();
    const api = trpc(srv.url, user.apiKey);
    ({ id: jobId } = await api.jobs.submit.mutate({
      kernel: "program", program: program.hash, input: { mode: "range", start: 0, end: UNITS }, chunks: UNITS,
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001, outputLimitBytes: 4 * 1024 * 1024,
    } as never));
    await waitFor(async () => (await api.jobs.get.query({ id: jobId })).state !== "running", 60_000, "the job");
    expect((await api.jobs.get.query({ id: jobId })).error ?? "completed").toBe("completed");
  }, 120_000);
  afterAll(async () => {
    await volunteer?.stop();
    await srv?.close();
  });

  const get = (p: string) => fetch(`${srv.url}${p}`, { headers: { authorization: `Bearer ${user.apiKey}` } });
  // What each unit returned, as the job's result (concat) lists them in unit order.
  let expected: unknown[];

  it("streams result.json and units.json, and the API says where they are", async () => {
    expect(UNITS * UNIT_CHARS).toBeGreaterThan(MAX_API_OUTPUT_BYTES);
    const result = await get(`/api/jobs/${jobId}/result.json`);
    expect(result.status).toBe(200);
    const text = await result.text();
    expect(Number(result.headers.get("content-length"))).toBe(Buffer.byteLength(text));
    expected = JSON.parse(text);
    expect(expected).toHaveLength(UNITS);
    expect(new Set(expected.map((o) => JSON.stringify((o as { x: unknown }).x))).size).toBe(UNITS);
    for (const o of expected) expect((o as { pad: string }).pad).toBe("y".repeat(UNIT_CHARS));

    const units = await get(`/api/jobs/${jobId}/units.json`);
    expect(units.status).toBe(200);
    expect(units.headers.get("content-disposition")).toBe(`attachment; filename="tabgrid-${jobId}-units.json"`);
    expect(JSON.parse(await units.text())).toEqual(expected.map((output, index) => ({ index, output })));

    const api = trpc(srv.url, user.apiKey);
    expect(await trpcError(api.jobs.result.query({ id: jobId }))).toMatchObject({
      code: "UNPROCESSABLE_CONTENT", message: expect.stringContaining(`download it from /api/jobs/${jobId}/result.json`),
    });
    expect(await trpcError(api.jobs.unitOutputs.query({ id: jobId }))).toMatchObject({
      code: "UNPROCESSABLE_CONTENT", message: expect.stringContaining(`download them from /api/jobs/${jobId}/units.json`),
    });
    // Nobody else's: the same answer as for a job that does not exist.
    const other = await createUserWithKey(srv.deps, "other@example.com");
    for (const which of ["result", "units"]) {
      const r = await fetch(`${srv.url}/api/jobs/${jobId}/${which}.json`, { headers: { authorization: `Bearer ${other.apiKey}` } });
      expect(r.status).toBe(404);
      expect(await r.json()).toEqual({ error: `No job ${jobId}.` });
    }
  });

  it("lets a client go away in the middle, and serves the next", async () => {
    for (const which of ["result", "units"]) {
      await new Promise<void>((resolve, reject) => {
        const req = http.get(`${srv.url}/api/jobs/${jobId}/${which}.json`, { headers: { authorization: `Bearer ${user.apiKey}` } }, (res) => {
          res.once("data", () => {
            req.destroy();
            resolve();
          });
        });
        req.on("error", (e) => (req.destroyed ? resolve() : reject(e)));
      });
    }
    const health = await fetch(`${srv.url}/api/health`);
    expect(health.status).toBe(200);
    expect(JSON.parse(await (await get(`/api/jobs/${jobId}/units.json`)).text())).toHaveLength(UNITS);
  });

  it("fails a unit whose output no frame can carry with the reason, instead of computing it forever", async () => {
    const res = await fetch(`${srv.url}/api/programs?name=huge.js`, {
      method: "POST", headers: { authorization: `Bearer ${user.apiKey}` },
      body: `export function run(x) { return "z".repeat(${5 * 2 ** 20}); }\n`,
    });
    const program = await res.json();
    const api = trpc(srv.url, user.apiKey);
    const { id } = await api.jobs.submit.mutate({
      kernel: "program", program: program.hash, input: { mode: "range", start: 0, end: 1 }, chunks: 1,
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never);
    await waitFor(async () => (await api.jobs.get.query({ id })).state !== "running", 60_000, "the job to end");
    const job = await api.jobs.get.query({ id });
    expect(job.state).toBe("failed");
    expect(job.error).toContain("output is 5.0 MiB as JSON, more than the 4.0 MiB a frame to this server may carry");
  }, 90_000);

  it("the CLI saves both to files, and says where the result too large to print is", async () => {
    const out = path.join(srv.dir, "big-result.json");
    const units = path.join(srv.dir, "big-units.json");
    const r = await runCli(["job", jobId, "--json", "--output", out, "--units", units, "--url", srv.url, "--api-key", user.apiKey]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ status: "completed", result: null, resultNote: `The result (${(fs.statSync(out).size / 2 ** 20).toFixed(1)} MiB) is saved in ${out}.` });
    expect(JSON.parse(fs.readFileSync(out, "utf8"))).toEqual(expected);
    expect(JSON.parse(fs.readFileSync(units, "utf8"))).toEqual(expected.map((output, index) => ({ index, output })));
    // Without --output: where to download it.
    const bare = await runCli(["job", jobId, "--url", srv.url, "--api-key", user.apiKey]);
    expect(bare.code, bare.stderr).toBe(0);
    expect(bare.stdout).toContain(`download it from /api/jobs/${jobId}/result.json (tabgrid job ${jobId} --output FILE does).`);
  });
});
