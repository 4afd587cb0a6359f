import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { startTestServer, waitFor, type TestServer } from "../helpers/server";
import { collectPageErrors, keepScreenshot, launchChromium, signUp } from "../helpers/browser";
import { createApiKey } from "../../server/auth/apiKeys";
import { trpc } from "../helpers/clients";
import { balanceOf } from "../../server/services/credits/ledger";
import { escrowAccount } from "../../server/services/credits/accounts";

// A newcomer's first hour in Chromium, on the default settings (spot-checks on): one account
// and one tab complete a job; a quorum the volunteers online cannot form is explained, live
// and after a reload alike, and the owner ends the wait; a program that always throws fails
// its job with its own message.
describe("the first hour in the browser", () => {
  let server: TestServer;
  let browser: Browser;
  let me: BrowserContext;
  let baseURL: string;
  let portal: Page;
  let volunteer: Page;
  const errors: string[][] = [];

  beforeAll(async () => {
    server = await startTestServer({ TABGRID_UI: "on", ERROR_WAIT_SECONDS: "1" });
    browser = await launchChromium();
    baseURL = server.url.replace("127.0.0.1", "localhost");
    me = await browser.newContext({ viewport: { width: 1280, height: 900 }, baseURL });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  async function submitPi(chunks: number) {
    await portal.bringToFront();
    await portal.goto("/jobs");
    await portal.getByLabel("Kernel").selectOption("pi");
    await portal.locator('input[name="chunks"]').fill(String(chunks));
    await portal.getByTestId("estimate").waitFor();
    await portal.getByRole("button", { name: "Submit job" }).click();
    await portal.waitForURL(/\/jobs\/j\w+$/);
    return portal.url().split("/").pop()!;
  }

  it("one account, one tab: the newcomer's job completes", async () => {
    portal = await me.newPage();
    errors.push(collectPageErrors(portal));
    await signUp(portal, "newcomer@example.com", "first-hour-password");

    volunteer = await me.newPage();
    errors.push(collectPageErrors(volunteer));
    await volunteer.goto("/volunteer");
    await volunteer.getByRole("button", { name: "Start" }).click();
    await volunteer.getByTestId("volunteer-status").filter({ hasText: "connected" }).waitFor();

    const jobId = await submitPi(8);
    await portal.getByTestId("job-state").filter({ hasText: "completed" }).waitFor({ timeout: 45_000 });
    expect(await portal.getByTestId("units-done").textContent()).toBe("8 / 8");
    expect(await portal.getByTestId("throughput").textContent()).toMatch(/^\d+\.\d units\/s$/);
    expect(await portal.getByTestId("throughput").textContent()).not.toBe("0.0 units/s");
    expect(await portal.getByTestId("quorum-wait").count()).toBe(0);
    await keepScreenshot(portal, "e2e-first-hour-lone-newcomer");
    await volunteer.bringToFront();
    await waitFor(async () => Number((await volunteer.getByTestId("validated").textContent())!.split(" / ")[0]) >= 8, 10_000, "validations");
    expect(await volunteer.getByTestId("volunteer-waiting").count()).toBe(0);
    expect(await balanceOf(server.deps.db, escrowAccount(jobId))).toBe(0);
    await volunteer.getByRole("button", { name: "Stop" }).click();
    await waitFor(() => server.deps.coordinator.volunteers().length === 0, 5000, "the tab to stop volunteering");
  });

  it("explains a quorum nobody online can form, live and after a reload alike, and lets the owner accept the results", async () => {
    // A stranger (signed out: another account) volunteers; the newcomer's tab does not.
    const strangerContext = await browser.newContext({ viewport: { width: 1280, height: 900 }, baseURL });
    const stranger = await strangerContext.newPage();
    errors.push(collectPageErrors(stranger));
    await stranger.goto("/volunteer");
    await stranger.getByRole("button", { name: "Start" }).click();
    await stranger.getByTestId("volunteer-status").filter({ hasText: "connected" }).waitFor();

    const jobId = await submitPi(6);
    const notice = portal.getByTestId("quorum-wait");
    await notice.waitFor({ timeout: 30_000 });
    expect(await notice.textContent()).toMatch(/\d+ results? waits? for a volunteer from another account to confirm/);
    await stranger.bringToFront();
    await stranger.getByTestId("volunteer-waiting").waitFor({ timeout: 10_000 });
    expect(await stranger.getByTestId("volunteer-waiting").textContent()).toMatch(/^\d+ of your results? waits? for a volunteer from another account/);
    await keepScreenshot(stranger, "e2e-first-hour-volunteer-waiting");

    // Stopped, the stranger's results stay where they are: the live page and a reload agree.
    await stranger.getByRole("button", { name: "Stop" }).click();
    await waitFor(() => server.deps.coordinator.volunteers().length === 0, 5000, "the stranger to stop");
    await portal.bringToFront();
    const pending = async (p: Page) => /(\d+) awaiting a quorum/.exec((await p.getByTestId("replication").textContent())!)?.[1];
    const dbPending = await server.deps.db.result.count({ where: { jobId, state: "pending" } });
    expect(dbPending).toBeGreaterThan(0);
    await waitFor(async () => (await pending(portal)) === String(dbPending), 5000, "the live page to show every waiting result");
    await portal.getByTestId("job-state").filter({ hasText: "queued" }).waitFor();
    expect(await portal.getByTestId("throughput").textContent()).toBe("—");
    expect(await portal.getByTestId("eta").textContent()).toBe("—");
    // A reload shows what the live page shows (the live page may take a moment to be told).
    const reloaded = await me.newPage();
    await reloaded.goto(`/jobs/${jobId}`);
    await reloaded.getByTestId("quorum-wait").waitFor();
    expect(await pending(reloaded)).toBe(String(dbPending));
    const again = await reloaded.getByTestId("quorum-wait").textContent();
    expect(again).toMatch(new RegExp(`^${dbPending} results wait`));
    await waitFor(async () => (await portal.getByTestId("quorum-wait").textContent()) === again, 3000, "the live page to agree with a reload");
    await reloaded.close();
    await keepScreenshot(portal, "e2e-first-hour-quorum-wait");

    await portal.getByRole("button", { name: "Accept the unconfirmed results" }).click();
    await waitFor(async () => (await server.deps.db.workUnit.count({ where: { jobId, done: true } })) === dbPending, 10_000, "the accepted units");
    await waitFor(async () => (await portal.getByTestId("quorum-wait").count()) === 0, 5000, "the notice to go");
    await strangerContext.close();
  });

  it("fails a program that always throws, with its own message, on the job page and in the list", async () => {
    const user = await server.deps.db.user.findUniqueOrThrow({ where: { email: "newcomer@example.com" } });
    const { key } = await createApiKey(server.deps.db, user.id, "e2e");
    const res = await fetch(`${server.url}/api/programs?name=thrower.js`, {
      method: "POST", headers: { authorization: `Bearer ${key}` },
      body: "export function run(x) { throw new Error(`no luck with ${x}: the frobnicator is missing`); }\n",
    });
    const { hash } = await res.json();
    const { id } = await trpc(server.url, key).jobs.submit.mutate({ kernel: "program", program: hash, input: { mode: "json", items: [1, 2, 3] }, chunks: 3 } as never);
    await portal.goto(`/jobs/${id}`);
    await volunteer.bringToFront();
    await volunteer.getByRole("button", { name: "Start" }).click();
    await portal.bringToFront();
    await portal.getByTestId("job-state").filter({ hasText: "failed" }).waitFor({ timeout: 30_000 });
    expect(await portal.getByTestId("job-error").textContent()).toMatch(/Error: no luck with \d: the frobnicator is missing.*failed on 1 host/);
    await keepScreenshot(portal, "e2e-first-hour-failed-program");
    await portal.goto("/jobs");
    await portal.getByTestId("job-list-error").first().filter({ hasText: "the frobnicator is missing" }).waitFor();
    await volunteer.getByRole("button", { name: "Stop" }).click();
    for (const e of errors) expect(e).toEqual([]);
  });
});
