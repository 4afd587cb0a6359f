import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { createUserWithKey, startCliVolunteer, startTestServer, waitFor, type CliVolunteer, type TestServer } from "../helpers/server";
import { trpc } from "../helpers/clients";
import { writeRounds } from "../helpers/rounds";
import { collectPageErrors, keepScreenshot, launchChromium, signIn } from "../helpers/browser";

const numberAttr = async (page: Page, selector: string, attr: string) =>
  Promise.all((await page.locator(selector).all()).map(async (el) => Number(await el.getAttribute(attr))));

// An iterative job seen in the browser: the job page's chart draws every round (the last one,
// whose metric is exactly 0 once the centroids stop moving, too) and the convergence threshold
// at epsilon's height on its log scale; the admin jobs table counts one round's units.
describe("k-means views", () => {
  let server: TestServer;
  let browser: Browser;
  let volunteers: CliVolunteer[] = [];

  beforeAll(async () => {
    server = await startTestServer({ TABGRID_UI: "on" });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await Promise.all(volunteers.map((v) => v.stop()));
    await browser?.close();
    await server?.close();
  });

  it("plots every round with the threshold where it belongs, and the admin table shows units per round", async () => {
    const admin = await createUserWithKey(server.deps, "admin@example.com"); // the first account is the admin
    volunteers = [startCliVolunteer(server.url, 1, { dir: server.dir }), startCliVolunteer(server.url, 1, { dir: server.dir })];
    await waitFor(() => server.deps.coordinator.volunteers().length === 2, 30_000, "two volunteers");
    const api = trpc(server.url, admin.apiKey);
    // Four rounds: metrics of about 9.4, 2.4, 0.019, then exactly 0; epsilon is below them all.
    const epsilon = 1e-4;
    const kmeansJob = await api.jobs.submit.mutate({ kernel: "kmeans", chunks: 8, params: { seed: 2024, k: 8, spread: 3, points: 80_000, epsilon } });
    const piJob = await api.jobs.submit.mutate({ kernel: "pi", chunks: 4, params: { samples: 400_000 } });
    for (const { id } of [kmeansJob, piJob]) {
      await waitFor(async () => (await api.jobs.get.query({ id })).state !== "running", 60_000, `job ${id} to end`);
    }
    const job = await api.jobs.get.query({ id: kmeansJob.id });
    expect(job.state, job.error ?? "").toBe("completed");
    const metrics = job.rounds.map((r) => r.metric!);
    expect(metrics.length).toBeGreaterThanOrEqual(3);
    expect(metrics.at(-1)).toBe(0);
    expect(Math.min(...metrics.slice(0, -1))).toBeGreaterThan(epsilon);

    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, baseURL: server.url.replace("127.0.0.1", "localhost") });
    const page = await context.newPage();
    const errors = collectPageErrors(page);
    await signIn(page, admin.user.email, admin.password, `/jobs/${kmeansJob.id}`);
    await page.getByTestId("rounds-chart").locator(".recharts-line-dots").waitFor({ state: "attached" });
    expect(await page.getByTestId("round-row").count()).toBe(metrics.length);

    // One dot per round, from the first to the last.
    const chart = '[data-testid="rounds-chart"]';
    const dotsX = await numberAttr(page, `${chart} .recharts-line-dots circle`, "cx");
    const dotsY = await numberAttr(page, `${chart} .recharts-line-dots circle`, "cy");
    expect(dotsX).toHaveLength(metrics.length);
    expect([...dotsX].sort((a, b) => a - b)).toEqual(dotsX);

    // The y axis: labelled ticks at their heights (recharts draws labels and tick lines in
    // separate groups, in the same order); positive ones are powers of ten, and 0 is the bottom tick. Log-linear between two positive ticks gives any value's height.
    const tickLabels = await page.locator(`${chart} .recharts-yAxis-tick-labels .recharts-cartesian-axis-tick-value`).allTextContents();
    const tickYs = await numberAttr(page, `${chart} .recharts-yAxis-tick-lines .recharts-cartesian-axis-tick-line`, "y1");
    expect(tickLabels).toHaveLength(tickYs.length);
    const ticks = tickLabels.map((label, i) => ({ value: Number(label), y: tickYs[i] }));
    const zeroTick = ticks.find((t) => t.value === 0);
    expect(zeroTick, `a 0 tick among ${tickLabels.join(", ")}`).toBeDefined();
    expect(zeroTick!.y).toBe(Math.max(...tickYs));
    const positive = ticks.filter((t) => t.value > 0).sort((a, b) => a.value - b.value);
    expect(positive.length).toBeGreaterThanOrEqual(2);
    const [a, b] = [positive[0], positive.at(-1)!];
    const yOf = (v: number) => a.y + ((Math.log10(v) - Math.log10(a.value)) / (Math.log10(b.value) - Math.log10(a.value))) * (b.y - a.y);

    metrics.forEach((m, i) => expect(dotsY[i], `round ${i + 1}'s dot`).toBeCloseTo(m === 0 ? zeroTick!.y : yOf(m), 0));
    // The threshold: a horizontal line at epsilon's height, between the last two rounds' dots.
    const refY1 = await numberAttr(page, `${chart} .recharts-reference-line-line`, "y1");
    const refY2 = await numberAttr(page, `${chart} .recharts-reference-line-line`, "y2");
    expect(refY1).toHaveLength(1);
    expect(refY2[0]).toBe(refY1[0]);
    expect(refY1[0]).toBeCloseTo(yOf(epsilon), 0);
    expect(refY1[0]).toBeGreaterThan(dotsY.at(-2)!);
    expect(refY1[0]).toBeLessThan(dotsY.at(-1)!);
    await keepScreenshot(page, "e2e-kmeans-rounds");

    // The admin jobs table: the k-means job's last round and its units, the pi job as before.
    await page.goto("/admin/jobs");
    const doneCell = (id: string) => page.locator("tr", { has: page.getByRole("link", { name: id }) }).getByTestId("job-done");
    await doneCell(kmeansJob.id).waitFor();
    expect((await doneCell(kmeansJob.id).textContent())?.trim()).toBe(`round ${metrics.length} · 8/8`);
    expect(await doneCell(kmeansJob.id).getAttribute("title")).toBe(`8 units per round, at most ${job.maxRounds} rounds`);
    expect((await doneCell(piJob.id).textContent())?.trim()).toBe("4/4");
    await keepScreenshot(page, "e2e-admin-jobs-kmeans");
    expect(errors).toEqual([]);
    await context.close();
  });

  // A job of more rounds than one read carries (ROUNDS_PER_READ): the watch sends them a page
  // per update, several before the page renders again, and each must be kept.
  it("shows every round of a job of 2,500 rounds", async () => {
    const owner = await createUserWithKey(server.deps, "long@example.com");
    await Promise.all(volunteers.map((v) => v.stop()));
    volunteers = [];
    const { id } = await trpc(server.url, owner.apiKey).jobs.submit.mutate({ kernel: "kmeans", chunks: 2, params: { seed: 1, k: 3, points: 600 } });
    // No volunteer: the job stays running, and its rounds are written here (more than k-means
    // may run: only their showing is tested).
    const total = 2500;
    await writeRounds(server.deps.db, id, total, "inertia");

    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, baseURL: server.url.replace("127.0.0.1", "localhost") });
    const page = await context.newPage();
    const errors = collectPageErrors(page);
    await signIn(page, owner.user.email, owner.password, `/jobs/${id}`);
    await waitFor(async () => (await page.getByTestId("round-row").count()) === total, 30_000, `${total} rows of rounds`);
    expect(await page.getByTestId("rounds").locator("h2").textContent()).toMatch(new RegExp(`^Rounds ${total}\\b`));
    expect((await page.getByTestId("round-row").last().textContent())?.startsWith(String(total))).toBe(true);
    expect(errors).toEqual([]);
    await context.close();
  });
});
