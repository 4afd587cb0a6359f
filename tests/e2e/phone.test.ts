import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { createUserWithKey, repoRoot, startCliVolunteer, startTestServer, waitFor, waitForVolunteer, type CliVolunteer, type TestServer } from "../helpers/server";
import { trpc } from "../helpers/clients";
import { collectPageErrors, keepScreenshot, launchChromium, signIn } from "../helpers/browser";

const BENCH = "bench-2026-11-21T10-17-25Z";
const STRESS = "stress-2026-11-21T11-02-10Z";
const RULE = "Queue longer than a phone screen is wide";
const ISO = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

/** The locale and time zone the browser runs in, so the dates it shows are known in advance. */
const LOCALE = "en-GB";
const TIME_ZONE = "Europe/Paris";

/**
 * How far the page reaches past the window, and the elements that stick out furthest, to name
 * the culprit when it does. clientWidth leaves out a classic scrollbar: stricter than innerWidth.
 */
function overflow(page: Page) {
  return page.evaluate(() => {
    const doc = document.documentElement;
    const width = doc.clientWidth;
    const culprits: string[] = [];
    if (doc.scrollWidth > width) {
      for (const el of Array.from(document.body.querySelectorAll<HTMLElement>("*"))) {
        const r = el.getBoundingClientRect();
        // The deepest elements past the edge, not every ancestor of one.
        if (r.right > width + 0.5 && r.width > 0 && !Array.from(el.children).some((c) => c.getBoundingClientRect().right > width + 0.5)) {
          culprits.push(`${el.tagName.toLowerCase()}.${String(el.className).split(" ").join(".")} right=${Math.round(r.right)} "${(el.textContent ?? "").slice(0, 40)}"`);
        }
        if (culprits.length >= 5) break;
      }
    }
    return { scrollWidth: doc.scrollWidth, clientWidth: width, innerWidth: window.innerWidth, culprits };
  });
}

// Someone opens every page on a phone: nothing scrolls sideways (wide tables scroll inside
// their cards), the navigation sits behind a Menu button, dates read in their own locale,
// one credit is "1 credit", and cancelling a job or banning a host asks first.
describe("every page on a phone", () => {
  let server: TestServer;
  let browser: Browser;
  let reportsDir: string;
  let volunteer: CliVolunteer | undefined;

  beforeAll(async () => {
    reportsDir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-phone-e2e-"));
    const fixtures = path.join(repoRoot, "tests", "fixtures", "reports");
    for (const f of fs.readdirSync(fixtures)) fs.copyFileSync(path.join(fixtures, f), path.join(reportsDir, f));
    server = await startTestServer({ TABGRID_UI: "on", REPORTS_DIR: reportsDir });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await volunteer?.stop();
    await browser?.close();
    await server?.close();
    fs.rmSync(reportsDir, { recursive: true, force: true });
  });

  it("fits 390 and 360 px wide, with a menu, local dates, \"1 credit\" and confirm steps", async () => {
    const admin = await createUserWithKey(server.deps, "a.rather.long.address.for.a.phone@example.com"); // the first account is the admin
    const api = trpc(server.url, admin.apiKey);

    // Data on every page: a finished iterative job (rounds chart and table), a host with
    // validated work, a job left running with nobody online, an alert rule and a channel.
    volunteer = startCliVolunteer(server.url, 1, { apiKey: admin.apiKey, dir: server.dir, name: "phone-test-host" });
    await waitForVolunteer(server.deps, volunteer.identity.volunteerId);
    const done = await api.jobs.submit.mutate({ kernel: "kmeans", chunks: 4, params: { k: 3, seed: 2 }, replication: { replicas: 1, quorum: 1 } });
    await waitFor(async () => (await api.jobs.get.query({ id: done.id })).state === "completed", 60_000, "the k-means job to finish");
    // The admin's host earns from someone else's job (its own jobs pay it nothing): a payout on /account.
    const neighbour = trpc(server.url, (await createUserWithKey(server.deps, "neighbour@example.com")).apiKey);
    const paid = await neighbour.jobs.submit.mutate({ kernel: "pi", chunks: 2, params: { samples: 1_000_000 }, replication: { replicas: 1, quorum: 1 } });
    await waitFor(async () => (await neighbour.jobs.get.query({ id: paid.id })).state === "completed", 60_000, "the neighbour's job to finish");
    await volunteer.stop();
    await waitFor(() => server.deps.coordinator.volunteers().length === 0, 10_000, "the volunteer to leave");
    const running = await api.jobs.submit.mutate({ kernel: "pi", chunks: 4, params: { samples: 1_000_000 } });
    await api.alerts.createRule.mutate({ name: RULE, metric: "queue_depth", comparison: ">", threshold: 1000, forSeconds: 60 });
    await api.alerts.createChannel.mutate({
      kind: "webhook", name: "ops", format: "slack",
      url: "https://hooks.example.org/services/T00000000/B00000000/averyveryveryverylongwebhooksecretthatdoesnotbreak",
    });
    const host = await server.deps.db.volunteer.findFirstOrThrow({ where: { id: volunteer.identity.volunteerId } });

    // Each page and what shows it has loaded (its data, not just its frame).
    const pages: Array<{ path: string; name: string; ready: (p: Page) => Promise<unknown> }> = [
      { path: "/", name: "home", ready: (p) => p.getByText("Worker threads").waitFor() },
      { path: "/signin", name: "signin", ready: (p) => p.getByLabel("Email").waitFor() },
      { path: "/jobs", name: "jobs", ready: (p) => p.getByRole("link", { name: done.id }).waitFor() },
      { path: `/jobs/${done.id}`, name: "job-completed", ready: (p) => p.getByTestId("rounds-chart").locator(".recharts-line-curve").waitFor({ state: "attached" }) },
      { path: `/jobs/${running.id}`, name: "job-running", ready: (p) => p.getByRole("button", { name: "Cancel job" }).waitFor() },
      { path: "/volunteer", name: "volunteer", ready: (p) => p.getByRole("button", { name: "Start" }).waitFor() },
      { path: "/account", name: "account", ready: (p) => p.getByRole("cell", { name: "Earned computing" }).first().waitFor() },
      { path: "/leaderboard", name: "leaderboard", ready: (p) => p.getByRole("cell", { name: "phone-test-host" }).waitFor() },
      { path: "/admin", name: "admin", ready: (p) => p.getByTestId("chart-throughput").locator(".recharts-line-curve").first().waitFor({ state: "attached" }) },
      { path: "/admin/jobs", name: "admin-jobs", ready: (p) => p.getByRole("link", { name: running.id }).waitFor() },
      { path: "/admin/volunteers", name: "admin-volunteers", ready: (p) => p.getByTestId(`volunteer-${host.id}`).waitFor() },
      { path: "/admin/ads", name: "admin-ads", ready: (p) => p.getByTestId("ad-creatives").waitFor() },
      { path: "/admin/pricing", name: "admin-pricing", ready: (p) => p.getByTestId("price").filter({ hasText: /\d/ }).waitFor() },
      { path: "/admin/alerts", name: "admin-alerts", ready: (p) => p.getByTestId("channel-ops").waitFor() },
      { path: "/admin/reports", name: "admin-reports", ready: (p) => p.getByTestId("report-row").first().waitFor() },
      { path: `/admin/reports?name=${BENCH}`, name: "admin-report-bench", ready: (p) => p.getByTestId("targets").waitFor() },
      { path: `/admin/reports?name=${STRESS}`, name: "admin-report-stress", ready: (p) => p.getByTestId("scenarios").waitFor() },
    ];

    const contexts: BrowserContext[] = [];
    const phone = async (width: number, height: number) => {
      const context = await browser.newContext({
        viewport: { width, height }, locale: LOCALE, timezoneId: TIME_ZONE,
        baseURL: server.url.replace("127.0.0.1", "localhost"), acceptDownloads: true,
      });
      contexts.push(context);
      const page = await context.newPage();
      return { page, errors: collectPageErrors(page) };
    };

    try {
      for (const [width, height] of [[390, 844], [360, 740]]) {
        const { page, errors } = await phone(width, height);
        await signIn(page, admin.user.email, admin.password, "/jobs");
        for (const p of pages) {
          await page.goto(p.path);
          await p.ready(page);
          // Charts size themselves after a frame or two (ResizeObserver).
          await page.waitForTimeout(300);
          const o = await overflow(page);
          expect(o.innerWidth, p.path).toBe(width);
          expect(o.scrollWidth, `${p.path} at ${width} px: ${o.culprits.join("; ")}`).toBeLessThanOrEqual(o.clientWidth);
          await keepScreenshot(page, `e2e-phone-${width}-${p.name}`);
        }
        expect(errors).toEqual([]);
      }

      const { page, errors } = await phone(390, 844);
      await signIn(page, admin.user.email, admin.password, "/");

      // The links are behind the Menu button, which opens them; following one closes it.
      const menu = page.getByRole("button", { name: "Menu" });
      const leaderboard = page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Leaderboard" });
      expect(await menu.getAttribute("aria-expanded")).toBe("false");
      expect(await leaderboard.isVisible()).toBe(false);
      await menu.click();
      expect(await menu.getAttribute("aria-expanded")).toBe("true");
      await leaderboard.waitFor();
      expect(await page.getByRole("button", { name: "Sign out" }).isVisible()).toBe(true);
      await keepScreenshot(page, "e2e-phone-390-menu-open");
      await leaderboard.click();
      await page.waitForURL("**/leaderboard");
      await page.getByTestId("leaderboard-volunteers").waitFor();
      expect(await menu.getAttribute("aria-expanded")).toBe("false");
      expect(await leaderboard.isVisible()).toBe(false);
      // Escape closes it too.
      await menu.click();
      await leaderboard.waitFor();
      await page.keyboard.press("Escape");
      await leaderboard.waitFor({ state: "hidden" });
      expect(await menu.getAttribute("aria-expanded")).toBe("false");

      // Dates in the browser's locale and time zone, never ISO.
      const createdAt = (await server.deps.db.job.findUniqueOrThrow({ where: { id: done.id } })).createdAt;
      const local = new Intl.DateTimeFormat(LOCALE, { dateStyle: "medium", timeStyle: "short", timeZone: TIME_ZONE }).format(createdAt);
      await page.goto("/jobs");
      const submitted = page.getByRole("row").filter({ has: page.getByRole("link", { name: done.id }) }).getByRole("cell").last();
      expect(await submitted.textContent()).toBe(local);
      await page.goto("/account");
      const ledgerDates = page.getByRole("row").filter({ hasText: "Earned computing" }).getByRole("cell").first();
      await ledgerDates.first().waitFor();
      for (const text of await ledgerDates.allTextContents()) expect(text).not.toMatch(ISO);

      // One credit is "1 credit": the default price and the house ad's reward.
      await page.goto("/admin/pricing");
      await page.getByText("1 credit per reference CPU-second").waitFor();
      await page.goto("/account");
      await page.getByRole("button", { name: "Watch an ad for credits" }).click();
      await page.getByRole("button", { name: "Claim 1 credit", exact: true }).waitFor();
      await page.getByRole("button", { name: "Close" }).click();

      // Alert-rule fields say what they are, with units.
      await page.goto("/admin/alerts");
      await page.getByTestId(`rule-${RULE}`).getByRole("button", { name: "Edit" }).click();
      const editor = page.getByRole("form", { name: `edit ${RULE}` });
      await editor.getByLabel("For (seconds)").waitFor();
      await editor.getByLabel("Repeat every (minutes)").waitFor();
      await editor.getByLabel("Threshold (count)").waitFor();
      await keepScreenshot(page, "e2e-phone-390-rule-editor");
      expect(await page.getByRole("form", { name: "new rule" }).getByLabel("For (seconds)").inputValue()).toBe("60");
      // A ratio reads as a percentage next to its raw number.
      await page.getByTestId("rule-Low free disk").getByRole("button", { name: "Edit" }).click();
      const disk = page.getByRole("form", { name: "edit Low free disk" });
      expect(await disk.getByLabel("Threshold (fraction, 0.1 = 10%)").inputValue()).toBe("0.1");
      await disk.getByText("= 10% of the data volume").waitFor();

      // Cancelling a job asks first: No leaves it running, Yes cancels it.
      await page.goto(`/jobs/${running.id}`);
      await page.getByRole("button", { name: "Cancel job" }).click();
      await page.getByText("Really cancel this job?").waitFor();
      await keepScreenshot(page, "e2e-phone-390-confirm-cancel");
      await page.getByRole("button", { name: "No" }).click();
      await page.getByRole("button", { name: "Cancel job" }).waitFor();
      expect((await api.jobs.get.query({ id: running.id })).state).toBe("running");
      await page.getByRole("button", { name: "Cancel job" }).click();
      await page.getByRole("button", { name: "Yes" }).click();
      await page.getByTestId("job-state").filter({ hasText: "cancelled" }).waitFor();
      expect((await api.jobs.get.query({ id: running.id })).state).toBe("cancelled");

      // So does banning a host.
      await page.goto("/admin/volunteers");
      const row = page.getByTestId(`volunteer-${host.id}`);
      await row.getByRole("button", { name: "Ban 24 h" }).click();
      await row.getByText("Really ban this host for 24 h?").waitFor();
      const bannedUntil = async () => (await server.deps.db.reliability.findUnique({ where: { id: `host:${host.id}` } }))?.bannedUntil ?? null;
      expect(await bannedUntil()).toBeNull();
      await row.getByRole("button", { name: "Yes" }).click();
      await row.getByRole("button", { name: "Unban" }).waitFor();
      await waitFor(bannedUntil, 5000, "the ban to be stored");
      // While the tab volunteers, the bar says so on a line of its own, still within the screen.
      await page.goto("/volunteer");
      await page.getByRole("button", { name: "Start" }).click();
      await page.getByRole("link", { name: /computing · 0 tasks/ }).waitFor();
      const bar = await overflow(page);
      expect(bar.scrollWidth, bar.culprits.join("; ")).toBeLessThanOrEqual(bar.clientWidth);
      await keepScreenshot(page, "e2e-phone-390-volunteering");
      await page.getByRole("button", { name: "Stop" }).click();
      expect(errors).toEqual([]);

      // On a wide screen the links stay in the bar and there is no Menu button.
      const wide = await browser.newContext({ viewport: { width: 1280, height: 800 }, baseURL: server.url.replace("127.0.0.1", "localhost") });
      contexts.push(wide);
      const desk = await wide.newPage();
      await desk.goto("/");
      await desk.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Leaderboard" }).waitFor();
      expect(await desk.getByRole("button", { name: "Menu" }).isVisible()).toBe(false);
      await keepScreenshot(desk, "e2e-phone-desktop-home");
    } finally {
      await Promise.all(contexts.map((c) => c.close()));
    }
  }, 240_000);
});
