import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { createUserWithKey, repoRoot, startTestServer, waitFor, type TestServer } from "../helpers/server";
import { trpc } from "../helpers/clients";
import { measureEndedJobs } from "../../server/services/programs/outputStorage";
import { collectPageErrors, keepScreenshot, launchChromium, signIn } from "../helpers/browser";

// An uploaded WASM program (and a JS one) computed end to end by a volunteer tab in
// Chromium: the tab fetches the program and input blobs and runs them in its sandbox.
describe("uploaded programs on a browser volunteer", () => {
  let server: TestServer;
  let browser: Browser;

  beforeAll(async () => {
    execFileSync(process.execPath, [path.join(repoRoot, "scripts", "build-examples.mjs")], { cwd: repoRoot });
    server = await startTestServer({ TABGRID_UI: "on" });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it("computes a WASM job over byte blocks and a JS job over a range in the volunteer tab", async () => {
    const user = await createUserWithKey(server.deps, "wasm@example.com");
    const post = async (kind: string, body: Uint8Array, name: string) =>
      (await fetch(`${server.url}/api/${kind}?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${user.apiKey}` }, body: new Uint8Array(body) })).json();
    const wasm = await post("programs", fs.readFileSync(path.join(repoRoot, "examples", "wasm", "bytesum.wasm")), "bytesum.wasm");
    const collatz = await post("programs", fs.readFileSync(path.join(repoRoot, "examples", "js", "collatz.js")), "collatz.js");
    const bytes = new Uint8Array(Array.from({ length: 50_000 }, (_, i) => (i * 31) % 251));
    const data = await post("data", bytes, "data.bin");

    const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 }, baseURL: server.url.replace("127.0.0.1", "localhost") })).newPage();
    const errors = collectPageErrors(page);
    await page.goto("/volunteer");
    await page.getByRole("button", { name: "Start" }).click();
    await page.getByTestId("volunteer-status").filter({ hasText: "connected" }).waitFor();

    const api = trpc(server.url, user.apiKey);
    const one = { replicas: 1 };
    const a = await api.jobs.submit.mutate({ kernel: "program", program: wasm.hash, input: { mode: "blocks", data: data.hash, blockBytes: 8192 }, merge: "reduce", replication: one });
    const b = await api.jobs.submit.mutate({ kernel: "program", program: collatz.hash, input: { mode: "range", start: 1, end: 3000 }, chunks: 5, merge: "reduce", replication: one });
    for (const id of [a.id, b.id]) {
      await waitFor(async () => ["completed", "failed"].includes((await api.jobs.get.query({ id })).state), 60_000, `job ${id} in the browser`);
      const job = await api.jobs.get.query({ id });
      expect(job.state, job.error ?? "").toBe("completed");
      // No task failed and was retried: a worker runs the same program many times in a row.
      expect(job.results.errors).toBe(0);
    }
    const sum = Buffer.from(((await api.jobs.result.query({ id: a.id })) as { b64: string }).b64, "base64");
    expect(sum.readBigUInt64LE(0)).toBe(BigInt(bytes.reduce((s, x) => s + x, 0)));
    expect(sum.readBigUInt64LE(8)).toBe(50_000n);
    expect(await api.jobs.result.query({ id: b.id })).toEqual({ start: 2919, steps: 216 });
    expect((await api.jobs.unitOutputs.query({ id: a.id })).length).toBe(7);

    await page.getByTestId("tasks-done").filter({ hasText: "12" }).waitFor({ timeout: 10_000 });
    await keepScreenshot(page, "e2e-program-volunteer");
    expect(errors).toEqual([]);
  });

  it("a result too large for the API: the job page says so and offers the downloads, once the browser volunteer computed it", async () => {
    const user = await createUserWithKey(server.deps, "big@example.com");
    const program = await (await fetch(`${server.url}/api/programs?name=big.js`, {
      method: "POST", headers: { authorization: `Bearer ${user.apiKey}` },
      body: "export function run(x) { return { x, pad: \"y\".repeat(3000000) }; }\n",
    })).json();
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, baseURL: server.url.replace("127.0.0.1", "localhost") });
    const volunteer = await context.newPage();
    await volunteer.goto("/volunteer");
    await volunteer.getByRole("button", { name: "Start" }).click();
    await volunteer.getByTestId("volunteer-status").filter({ hasText: "connected" }).waitFor();
    const api = trpc(server.url, user.apiKey);
    const { id } = await api.jobs.submit.mutate({
      kernel: "program", program: program.hash, input: { mode: "range", start: 0, end: 12 }, chunks: 12, replication: { replicas: 1 }, cpuSecondsPerUnit: 0.001,
      outputLimitBytes: 4 * 1024 * 1024,
    } as never);
    await waitFor(async () => (await api.jobs.get.query({ id })).state !== "running", 60_000, "the big job");
    expect((await api.jobs.get.query({ id })).error ?? "completed").toBe("completed");

    const page = await context.newPage();
    const errors = collectPageErrors(page);
    await signIn(page, "big@example.com", user.password, `/jobs/${id}`);
    await page.getByTestId("result-note").filter({ hasText: `download it from /api/jobs/${id}/result.json` }).waitFor({ timeout: 15_000 });
    await expect(page.getByRole("link", { name: "Download JSON" }).getAttribute("href")).resolves.toBe(`/api/jobs/${id}/result.json`);
    await keepScreenshot(page, "e2e-big-result");

    // What its outputs keep (measured once it has ended), and deleting it from its page frees them.
    await measureEndedJobs(server.deps);
    await page.goto("/jobs");
    await expect.poll(() => page.getByTestId("storage-use").textContent()).toMatch(/your ended jobs' outputs take 10[0-9]\.\d MiB of a third 1\.0 GiB/);
    await page.goto(`/jobs/${id}`);
    await page.getByRole("button", { name: "Delete job" }).click();
    await page.getByRole("button", { name: "Yes" }).click();
    await page.waitForURL(/\/jobs$/);
    expect(await server.deps.db.job.count({ where: { id, deletedAt: { not: null }, resultBlob: null } })).toBe(1);
    expect(await server.deps.db.result.count({ where: { jobId: id, output: { not: null } } })).toBe(0);
    await expect.poll(() => page.getByTestId("storage-use").textContent()).not.toMatch(/outputs/);
    expect(errors).toEqual([]);
  });

  it("lists the files uploaded from the jobs page with the storage used, and deletes one after asking", async () => {
    const user = await createUserWithKey(server.deps, "files@example.com");
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 1000 }, baseURL: server.url.replace("127.0.0.1", "localhost") })).newPage();
    const errors = collectPageErrors(page);
    await signIn(page, "files@example.com", user.password, "/jobs");
    const card = page.getByRole("region", { name: "Your files" });
    await card.getByText("No programs or data files yet").waitFor();

    await page.getByLabel("Program (.js or .wasm)").setInputFiles(path.join(repoRoot, "examples", "js", "collatz.js"));
    await page.getByTestId("program-info").waitFor();
    await page.locator("select[name=mode]").selectOption("lines");
    await page.locator("input[name=data]").setInputFiles({ name: "words.txt", mimeType: "text/plain", buffer: Buffer.from("a b\nc d\n".repeat(300)) });
    await expect.poll(() => card.getByTestId("file-row").count()).toBe(2);
    await expect.poll(() => card.getByTestId("storage-use").textContent()).toMatch(/KiB used of 1\.0 GiB/);
    // A job cut from the file holds its chunks too, on a budget of their own, until it ends.
    const [program, data] = await Promise.all([
      server.deps.db.programUpload.findFirstOrThrow({ where: { ownerId: user.user.id } }),
      server.deps.db.dataFile.findFirstOrThrow({ where: { ownerId: user.user.id } }),
    ]);
    const { id } = await trpc(server.url, user.apiKey).jobs.submit.mutate({ kernel: "program", program: program.hash, input: { mode: "lines", data: data.hash }, chunks: 3, replication: { replicas: 1 } } as never);
    await page.reload();
    await expect.poll(() => card.getByTestId("storage-use").textContent()).toMatch(/KiB used of 1\.0 GiB; your jobs' inputs take [\d.]+ KiB of another 1\.0 GiB until they are removed/);
    await keepScreenshot(page, "e2e-files");
    await trpc(server.url, user.apiKey).jobs.cancel.mutate({ id }).catch(() => undefined);

    const row = card.getByTestId("file-row").filter({ hasText: "words.txt" });
    await row.getByRole("button", { name: "Delete" }).click();
    await row.getByRole("button", { name: "Delete" }).click(); // the confirmation's "Delete"
    await expect.poll(() => card.getByTestId("file-row").count()).toBe(1);
    expect(await server.deps.db.dataFile.count({ where: { name: "words.txt" } })).toBe(0);
    expect(errors).toEqual([]);
  });
});
