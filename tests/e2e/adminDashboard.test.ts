import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { createUserWithKey, startCliVolunteer, startTestServer, waitFor, type CliVolunteer, type TestServer } from "../helpers/server";
import { trpc, trpcError } from "../helpers/clients";
import { collectPageErrors, keepScreenshot, launchChromium, signIn } from "../helpers/browser";
import { SIGN_IN_BURST, SIGN_IN_EVERY_S } from "../../server/http/signInLimit";

// An admin watches the dashboard's charts move while a job runs; other users are refused.
describe("admin dashboard", () => {
  let server: TestServer;
  let browser: Browser;
  let volunteers: CliVolunteer[] = [];

  beforeAll(async () => {
    server = await startTestServer({ TABGRID_UI: "on", METRICS_INTERVAL_SECONDS: "0.5" });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await Promise.all(volunteers.map((v) => v.stop()));
    await browser?.close();
    await server?.close();
  });

  it("shows live charts that update while a job runs", async () => {
    const admin = await createUserWithKey(server.deps, "admin@example.com"); // the first account is the admin
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, baseURL: server.url.replace("127.0.0.1", "localhost") });
    const page = await context.newPage();
    const errors = collectPageErrors(page);
    await signIn(page, admin.user.email, admin.password, "/admin");
    await page.getByTestId("dashboard").waitFor();
    // A flat line has no height, so wait for the path to exist rather than to be "visible".
    await page.getByTestId("chart-throughput").locator(".recharts-line-curve").first().waitFor({ state: "attached" });
    expect(await page.getByTestId("tile-volunteers").textContent()).toBe("0");

    volunteers = [startCliVolunteer(server.url, 1, { dir: server.dir }), startCliVolunteer(server.url, 1, { dir: server.dir })];
    await waitFor(() => server.deps.coordinator.volunteers().length === 2, 30_000, "two volunteers");
    const job = await trpc(server.url, admin.apiKey).jobs.submit.mutate({ kernel: "primes", chunks: 60, params: { to: 1_200_000_000 } });

    // The tiles and the charts follow the job as it runs.
    await page.getByTestId("tile-volunteers").filter({ hasText: "2" }).waitFor({ timeout: 15_000 });
    await waitFor(async () => Number(await page.getByTestId("tile-results").textContent()) > 0, 30_000, "a non-zero results rate on the dashboard");
    // Line and sample count are read in one step: a sample landing between two reads would
    // otherwise pair a new count with the old line.
    const chartState = () => page.evaluate(() => ({
      line: document.querySelector('[data-testid="chart-throughput"] .recharts-line-curve')?.getAttribute("d") ?? null,
      samples: Number(document.querySelector('[data-testid="sample-count"]')?.textContent?.split(" ")[0]),
    }));
    const before = await chartState();
    expect(before.line).toMatch(/^M/);
    await waitFor(async () => {
      const now = await chartState();
      return now.samples > before.samples && now.line !== before.line;
    }, 10_000, "a new sample and the throughput chart redrawn with it");
    await keepScreenshot(page, "e2e-admin-dashboard");

    await waitFor(async () => (await server.deps.db.job.findUnique({ where: { id: job.id } }))?.state === "completed", 60_000, "the job to finish");
    // The sampled history (what the charts draw) saw the work: results and both volunteers.
    const history = server.deps.monitoring.sampler.history();
    expect(Math.max(...history.map((s) => s.values.results_per_second))).toBeGreaterThan(0);
    expect(Math.max(...history.map((s) => s.values.volunteers))).toBe(2);
    expect(errors).toEqual([]);
    await context.close();
  });

  it("refuses the dashboard and its API to non-admins", async () => {
    const user = await createUserWithKey(server.deps, "someone@example.com");
    const context = await browser.newContext({ baseURL: server.url.replace("127.0.0.1", "localhost") });
    const page = await context.newPage();
    await signIn(page, user.user.email, user.password, "/admin");
    await page.getByTestId("admin-refused").waitFor();
    expect(await page.getByTestId("dashboard").count()).toBe(0);
    await keepScreenshot(page, "e2e-admin-refused");
    expect(await trpcError(trpc(server.url, user.apiKey).monitoring.history.query({ minutes: 60 }))).toMatchObject({ code: "FORBIDDEN", httpStatus: 403 });
    expect(await trpcError(trpc(server.url, user.apiKey).alerts.rules.query())).toMatchObject({ code: "FORBIDDEN" });
    expect(await trpcError(trpc(server.url).admin.volunteers.query({ limit: 5 }))).toMatchObject({ code: "UNAUTHORIZED" });
    await context.close();
  });

  it("grants credits to an account from the users page", async () => {
    const admin = await server.deps.db.user.findFirstOrThrow({ where: { role: "admin" } });
    const user = await createUserWithKey(server.deps, "grantee@example.com");
    const before = await trpc(server.url, user.apiKey).account.balance.query();
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, baseURL: server.url.replace("127.0.0.1", "localhost") });
    const page = await context.newPage();
    const errors = collectPageErrors(page);
    await signIn(page, admin.email, "correct horse battery", "/admin/users");
    await page.getByLabel("search users").fill("grantee");
    const row = page.getByTestId("user-row").filter({ hasText: "grantee@example.com" });
    await row.getByRole("button", { name: "Grant credits" }).click();
    const form = page.getByRole("form", { name: "grant credits to grantee@example.com" });
    // Too much is refused with the reason, and moves nothing.
    await form.getByLabel("credits").fill("5000000");
    await form.getByLabel("memo").fill("a course on training");
    await form.getByRole("button", { name: "Grant" }).click();
    await form.getByRole("alert").filter({ hasText: "at most 1,000,000 credits" }).waitFor();
    expect(await trpc(server.url, user.apiKey).account.balance.query()).toBe(before);
    await form.getByLabel("credits").fill("500");
    await form.getByRole("button", { name: "Grant" }).click();
    await form.waitFor({ state: "detached" });
    await waitFor(async () => (await row.getByTestId("user-balance").textContent()) === String((before + 500_000) / 1000), 10_000, "the new balance on the page");
    await keepScreenshot(page, "e2e-admin-users-grant");
    const { entries } = await trpc(server.url, user.apiKey).account.ledger.query({ limit: 1 });
    expect(entries[0]).toMatchObject({ kind: "grant", amount: 500_000, memo: "a course on training" });
    expect(errors).toEqual([]);
    await context.close();
  });

  // Last in this file: it spends the address's sign-in budget.
  it("refuses sign-ins past the address's budget with 429, and the page says why", async () => {
    const base = server.url.replace("127.0.0.1", "localhost");
    const csrf = await fetch(`${base}/api/auth/csrf`);
    const { csrfToken } = (await csrf.json()) as { csrfToken: string };
    const cookie = csrf.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
    const attempt = () => fetch(`${base}/api/auth/callback/credentials`, {
      method: "POST", redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie, "x-auth-return-redirect": "1" },
      body: new URLSearchParams({ csrfToken, email: "nobody@example.com", password: "wrong password", json: "true" }),
    });
    const statuses: number[] = [];
    for (let i = 0; i < SIGN_IN_BURST + 5; i++) statuses.push((await attempt()).status);
    // The three sign-ins of the tests above count too.
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(5);
    expect(statuses.slice(0, SIGN_IN_BURST - 3).every((s) => s !== 429)).toBe(true);
    const refused = await attempt();
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe(String(SIGN_IN_EVERY_S));
    expect(new URL(((await refused.json()) as { url: string }).url).searchParams.get("error")).toBe("TooManyAttempts");

    // The page, filled in before the budget is spent again. An attempt comes back every few
    // seconds: one may come back between the last refusal and the click (then the password,
    // a wrong one, is checked), so the page is tried a few times.
    const context = await browser.newContext({ baseURL: base });
    const page = await context.newPage();
    await page.goto("/signin");
    await page.getByLabel("Email").fill("admin@example.com");
    await page.getByLabel("Password").fill("not the password");
    const alert = page.locator("p.error[role=alert]");
    let shown = "";
    for (let i = 0; i < 3 && !shown.startsWith("Too many"); i++) {
      while ((await attempt()).status !== 429);
      await page.locator("form").getByRole("button", { name: "Sign in" }).click();
      await alert.waitFor();
      await waitFor(async () => !(await page.locator("form").getByRole("button", { name: "Sign in" }).isDisabled()), 10_000, "the attempt's answer");
      shown = (await alert.textContent()) ?? "";
    }
    expect(shown).toBe("Too many sign-in attempts from your network: wait a minute and try again.");
    await context.close();
  });
});
