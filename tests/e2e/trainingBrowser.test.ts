import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, BrowserContext } from "playwright-core";
// @ts-expect-error: a plain ES module of the examples, without types
import { makeClassification } from "../../examples/js/make-classification.mjs";
import { referenceRun } from "../../bench/lib/referenceRun";
import { createUserWithKey, repoRoot, startTestServer, waitFor, type TestServer } from "../helpers/server";
import { trpc } from "../helpers/clients";
import { collectPageErrors, keepScreenshot, launchChromium, signIn } from "../helpers/browser";
import { SANDBOX_HOST_PATH } from "../../worker/sandbox/hostPage";

// Training in a volunteer tab: the logistic-regression example runs its rounds in Chromium's
// sandboxed workers (the CSV shards fetched once and kept by the tab), the server steps the
// weights, and the job page charts the loss of every round and tabulates its metrics.
describe("training on a browser volunteer", () => {
  let server: TestServer;
  let browser: Browser;

  beforeAll(async () => {
    server = await startTestServer({ TABGRID_UI: "on" });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it("trains in the tab to the weights of a single-process run, and the job page charts every round", async () => {
    const user = await createUserWithKey(server.deps, "trainer@example.com");
    const post = async (kind: string, body: string, name: string) =>
      ((await (await fetch(`${server.url}/api/${kind}?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${user.apiKey}` }, body })).json()) as { hash: string }).hash;
    const programFile = path.join(repoRoot, "examples", "js", "logreg.js");
    const csv: string = makeClassification({ rows: 2000, features: 5, seed: 3 });
    const program = await post("programs", fs.readFileSync(programFile, "utf8"), "logreg.js");
    const data = await post("data", csv, "data.csv");

    const context = await browser.newContext({ viewport: { width: 1280, height: 1100 }, baseURL: server.url.replace("127.0.0.1", "localhost") });
    const errors = await startVolunteerTab(context);

    const api = trpc(server.url, user.apiKey);
    const rounds = 8;
    const params = { lr: 0.8 };
    const { id } = await api.jobs.submit.mutate({
      kernel: "program", program, input: { mode: "csv", data }, chunks: 4, merge: "mean", rounds, params, cpuSecondsPerUnit: 0.01, replication: { replicas: 1 },
    } as never);
    await waitFor(async () => ["completed", "failed"].includes((await api.jobs.get.query({ id })).state), 90_000, `job ${id} in the browser`);
    const job = await api.jobs.get.query({ id });
    expect(job.state, job.error ?? "").toBe("completed");
    expect(job.round).toBe(rounds);
    // For docs/performance.md: a round in one Chromium tab (the first includes fetching the shards).
    console.log("browser round latencies", job.rounds.map((r) => r.latencyMs));
    const reference = await referenceRun({ program: programFile, csv, shards: 4, merge: "mean", params, rounds });
    // Chromium's Math.exp may differ from Node's in the last bit: equal to 1e-12, not bit for bit.
    const got = (await api.jobs.result.query({ id })) as { w: number[]; loss: number };
    const want = reference.result as typeof got;
    expect(got.w).toHaveLength(want.w.length);
    got.w.forEach((w, i) => expect(Math.abs(w - want.w[i])).toBeLessThanOrEqual(1e-12 * Math.max(1, Math.abs(want.w[i]))));

    const page = await context.newPage();
    errors.push(...collectPageErrors(page));
    await signIn(page, user.user.email, user.password, `/jobs/${id}`);
    const chart = page.getByTestId("rounds-chart");
    await chart.locator(".recharts-line-dots").waitFor({ state: "attached" });
    await expect(chart.locator("h3").textContent()).resolves.toMatch(/^loss per round/);
    expect(await chart.locator(".recharts-line-dots circle").count()).toBe(rounds);
    expect(await page.getByTestId("round-row").count()).toBe(rounds);
    const headers = await page.getByTestId("rounds").locator("th").allTextContents();
    expect(headers).toEqual(["Round", "Latency", "loss", "accuracy"]);
    await page.getByTestId("rounds-metrics-chart").waitFor();
    await keepScreenshot(page, "e2e-training-rounds");
    expect(errors).toEqual([]);
    await context.close();
  });
  it("submits a training job from the program form: a CSV cut into shards, rounds and a trimmed mean", async () => {
    const user = await createUserWithKey(server.deps, "former@example.com");
    const csvFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-form-")), "classes.csv");
    fs.writeFileSync(csvFile, makeClassification({ rows: 1200, features: 4, seed: 9 }));
    const context = await browser.newContext({ viewport: { width: 1280, height: 1600 }, baseURL: server.url.replace("127.0.0.1", "localhost") });
    const errors = await startVolunteerTab(context);

    const page = await context.newPage();
    errors.push(...collectPageErrors(page));
    await signIn(page, user.user.email, user.password, "/jobs");
    const form = page.getByRole("form", { name: "Run your own program" });
    await form.locator('input[name="program"]').setInputFiles(path.join(repoRoot, "examples", "js", "logreg.js"));
    await form.getByTestId("program-info").filter({ hasText: "step" }).waitFor();
    await form.locator('select[name="mode"]').selectOption("csv");
    await form.locator('input[name="data"]').setInputFiles(csvFile);
    // Read as a table at its upload.
    await form.getByText("classes.csv").filter({ hasText: "1200 rows × 5 columns" }).waitFor();
    // A program that exports step is offered rounds; the shards are counted like chunks.
    const rounds = form.locator('input[name="rounds"]');
    expect(await rounds.inputValue()).toBe("20");
    await rounds.fill("3");
    await form.locator('select[name="merge"]').selectOption("trimmed-mean");
    await form.locator('input[name="trim"]').fill("0.25");
    await form.getByLabel("replicas", { exact: true }).fill("1");
    await form.locator('input[name="cpuSeconds"]').fill("0.01");
    await form.getByTestId("trial").filter({ hasText: "No trial run: a CSV's shards are cut on the server" }).waitFor();
    await form.getByTestId("program-estimate").waitFor();
    await keepScreenshot(page, "e2e-training-form");
    await form.getByRole("button", { name: "Submit program job" }).click();
    await page.waitForURL(/\/jobs\/j\w+$/);
    const id = new URL(page.url()).pathname.split("/").pop()!;
    await waitFor(async () => ["completed", "failed"].includes((await trpc(server.url, user.apiKey).jobs.get.query({ id })).state), 60_000, "the form's job");
    const job = await trpc(server.url, user.apiKey).jobs.get.query({ id });
    expect(job.state, job.error ?? "").toBe("completed");
    expect(job.round).toBe(3);
    expect(job.chunks).toBe(8);
    await page.getByTestId("round-row").nth(2).waitFor();
    // The page watched the job from its submission: after the first, each update carried only
    // the rounds after the last ended one, and the page kept the others.
    expect(await page.getByTestId("round-row").locator("td:first-child").allTextContents()).toEqual(["1", "2", "3"]);
    await expect.poll(() => page.getByTestId("round-row").locator("td:nth-child(2)").allTextContents()).toEqual(job.rounds.map((r) => (r.latencyMs! >= 1000 ? `${(r.latencyMs! / 1000).toFixed(1)} s` : `${r.latencyMs} ms`)));
    expect(errors).toEqual([]);
    await context.close();
  });
});

/** Opens the volunteer page in a tab of `context` and starts it; returns the page's errors as they come. */
async function startVolunteerTab(context: BrowserContext): Promise<string[]> {
  const volunteer = await context.newPage();
  const errors = collectPageErrors(volunteer);
  await volunteer.goto("/volunteer");
  await volunteer.getByRole("button", { name: "Start" }).click();
  await volunteer.getByTestId("volunteer-status").filter({ hasText: "connected" }).waitFor();
  // The program sandbox starts with the volunteer, before any program task: the first one does not wait for it.
  await expect.poll(() => volunteer.frames().some((f) => f.url().endsWith(SANDBOX_HOST_PATH)), { timeout: 15_000 }).toBe(true);
  return errors;
}
