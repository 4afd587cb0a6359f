import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { createUserWithKey, repoRoot, startTestServer, type TestServer } from "../helpers/server";
import { collectPageErrors, keepScreenshot, launchChromium, signIn } from "../helpers/browser";

const BENCH = "bench-2026-11-21T10-17-25Z";
const STRESS = "stress-2026-11-21T11-02-10Z";

/** A chart has drawn when its svg holds bars or a line. */
async function drawn(page: Page, testId: string) {
  const chart = page.getByTestId(testId);
  await chart.locator("svg .recharts-bar-rectangle, svg .recharts-line-curve").first().waitFor({ state: "attached" });
  return chart.locator("svg").count();
}

// An admin opens the reports page, sees a benchmark's targets and charts, switches to a stress
// test and downloads the raw report; a folder without reports explains how to make them.
describe("admin reports page", () => {
  let server: TestServer;
  let browser: Browser;
  let dir: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-reports-e2e-"));
    const fixtures = path.join(repoRoot, "tests", "fixtures", "reports");
    for (const f of fs.readdirSync(fixtures)) fs.copyFileSync(path.join(fixtures, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, "bench-2026-11-20T09-00-00Z.json"), "{ cut off");
    server = await startTestServer({ TABGRID_UI: "on", REPORTS_DIR: dir });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("shows the reports with their targets and charts", async () => {
    const admin = await createUserWithKey(server.deps, "admin@example.com"); // the first account is the admin
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, baseURL: server.url.replace("127.0.0.1", "localhost"), acceptDownloads: true });
    const page = await context.newPage();
    const errors = collectPageErrors(page);
    await signIn(page, admin.user.email, admin.password, "/admin");
    await page.getByRole("link", { name: "Reports" }).click();
    await page.waitForURL("**/admin/reports");

    // Newest first; the broken file is listed with its reason, the newest report is opened.
    const rows = page.getByTestId("report-row");
    await rows.first().waitFor();
    expect(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-name")))).toEqual([STRESS, BENCH, "bench-2026-11-20T09-00-00Z"]);
    expect(await page.getByTestId("broken").textContent()).toMatch(/does not parse/);
    await page.getByTestId("report").and(page.locator(`[data-name="${STRESS}"]`)).waitFor();

    // The benchmark: targets with met / not met, and every chart drawn.
    await rows.filter({ has: page.locator(`[title="${BENCH}"]`) }).getByRole("link").click();
    await page.waitForURL(`**/admin/reports?name=${BENCH}`);
    const targets = page.getByTestId("targets");
    await targets.waitFor();
    expect(await targets.locator("tbody tr").count()).toBe(4);
    expect(await targets.locator("tbody tr").first().textContent()).toContain("not met");
    expect(await targets.locator(".badge", { hasText: "not run" }).count()).toBe(2);
    for (const chart of ["chart-throughput", "chart-throughput-series", "chart-overhead", "chart-histogram", "chart-efficiency", "chart-timeline-cpu", "chart-timeline-rss", "chart-timeline-lag"]) {
      expect(await drawn(page, chart), chart).toBeGreaterThan(0);
    }
    expect(await page.getByTestId("chart-throughput").locator(".recharts-bar-rectangle").count()).toBe(3);
    expect(await page.getByTestId("phases").locator("tbody tr").count()).toBe(7);
    await keepScreenshot(page, "e2e-admin-reports-bench");

    // The raw files download as they were written.
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByTestId("download-json").click()]);
    expect(download.suggestedFilename()).toBe(`${BENCH}.json`);
    const saved = fs.readFileSync((await download.path())!, "utf8");
    expect(saved).toBe(fs.readFileSync(path.join(dir, `${BENCH}.json`), "utf8"));

    // The stress test: scenarios with findings, stats and series, probe latency, the timeline.
    await rows.filter({ has: page.locator(`[title="${STRESS}"]`) }).getByRole("link").click();
    await page.waitForURL(`**/admin/reports?name=${STRESS}`);
    await page.getByTestId("scenarios").waitFor();
    expect(await page.getByTestId("scenarios").locator("h2").textContent()).toBe("Scenarios: 3 of 5 passed");
    expect(await page.getByTestId("scenario").count()).toBe(5);
    expect(await page.getByTestId("scenario").nth(3).getByTestId("findings").textContent()).toContain("over the 500 ms budget");
    for (const chart of ["chart-health", "chart-shed", "chart-scenario-0", "chart-scenario-1", "chart-timeline-cpu", "chart-timeline-lag"]) {
      expect(await drawn(page, chart), chart).toBeGreaterThan(0);
    }
    await keepScreenshot(page, "e2e-admin-reports-stress");
    expect(errors).toEqual([]);

    // Without reports, the page says how to make them.
    fs.rmSync(dir, { recursive: true, force: true });
    await page.goto("/admin/reports");
    await page.getByTestId("reports-empty").waitFor();
    expect(await page.getByTestId("reports-empty").textContent()).toContain("npm run stress");
    await keepScreenshot(page, "e2e-admin-reports-empty");
    await context.close();
  });
});
