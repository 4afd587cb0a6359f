import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { startTestServer, waitFor, type TestServer } from "../helpers/server";
import { collectPageErrors, keepScreenshot, launchChromium, signUp } from "../helpers/browser";
import { auditLedger } from "../../server/services/credits/ledger";
import { userAccount } from "../../server/services/credits/accounts";

// The whole loop in Chromium: sign up, volunteer in one tab (and a second, anonymous
// browser), submit a Mandelbrot job in another tab, watch it complete, see the image and the
// volunteers' credits. The owner's own tab needs no second copy and earns nothing from the
// owner's job; the stranger's copies are confirmed by the owner's and paid.
describe("compute loop in the browser", () => {
  let server: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let baseURL: string;

  beforeAll(async () => {
    server = await startTestServer({ TABGRID_UI: "on" });
    browser = await launchChromium();
    baseURL = server.url.replace("127.0.0.1", "localhost");
    context = await browser.newContext({ viewport: { width: 1280, height: 900 }, baseURL });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it("signs up, volunteers, computes a Mandelbrot job and pays the volunteer", async () => {
    const portal = await context.newPage();
    const portalErrors = collectPageErrors(portal);
    await signUp(portal, "ada@example.com", "analytical-engine");
    await expect(portal.getByRole("heading", { name: "New job" }).isVisible()).resolves.toBe(true);

    const volunteer: Page = await context.newPage();
    const volunteerErrors = collectPageErrors(volunteer);
    await volunteer.goto("/volunteer");
    expect(await volunteer.getByTestId("credits-earned").textContent()).toBe("0");
    await volunteer.getByRole("button", { name: "Start" }).click();
    await volunteer.getByTestId("volunteer-status").filter({ hasText: "connected" }).waitFor();
    const stranger = await (await browser.newContext({ viewport: { width: 1280, height: 900 }, baseURL })).newPage();
    const strangerErrors = collectPageErrors(stranger);
    await stranger.goto("/volunteer");
    await stranger.getByRole("button", { name: "Start" }).click();
    await stranger.getByTestId("volunteer-status").filter({ hasText: "connected" }).waitFor();
    await waitFor(() => server.deps.coordinator.volunteers().length === 2, 10_000, "both browsers to join as volunteers");

    await portal.bringToFront();
    await portal.getByLabel("Kernel").selectOption("mandelbrot");
    await portal.locator('input[name="width"]').fill("480");
    await portal.locator('input[name="height"]').fill("320");
    await portal.locator('input[name="chunks"]').fill("16");
    await portal.getByTestId("estimate").waitFor();
    // A double click sends the form twice under one idempotency key: one job.
    await portal.getByRole("button", { name: "Submit job" }).dblclick();
    await portal.waitForURL(/\/jobs\/j\w+$/);
    const jobId = portal.url().split("/").pop()!;
    expect(await server.deps.db.job.findMany({ select: { id: true } })).toEqual([{ id: jobId }]);

    await portal.getByTestId("job-state").filter({ hasText: "completed" }).waitFor({ timeout: 45_000 });
    expect(await portal.getByTestId("units-done").textContent()).toBe("16 / 16");
    // One copy per unit where the owner's tab took it first, two where the stranger did.
    const replication = (await portal.getByTestId("replication").textContent())!;
    const valid = Number(/results (\d+) valid, 0 invalid, 0 errors/.exec(replication)?.[1]);
    expect(valid).toBeGreaterThanOrEqual(16);
    expect(valid).toBeLessThanOrEqual(32);
    const canvas = portal.getByTestId("mandelbrot");
    await canvas.waitFor();
    // The image really was painted: the set is black, the outside is coloured.
    const colours = await canvas.evaluate((c: HTMLCanvasElement) => {
      const d = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
      const seen = new Set<number>();
      for (let i = 0; i < d.length; i += 4 * 37) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      return { distinct: seen.size, black: seen.has(0), width: c.width, height: c.height };
    });
    expect(colours).toMatchObject({ width: 480, height: 320, black: true });
    expect(colours.distinct).toBeGreaterThan(20);
    await keepScreenshot(portal, "e2e-mandelbrot-job");

    await volunteer.bringToFront();
    // Both browsers computed; the stranger was paid for its validated copies, the owner's tab nothing.
    const validatedOn = async (p: Page) => {
      const [ok, bad] = (await p.getByTestId("validated").textContent())!.split(" / ").map(Number);
      expect(bad).toBe(0);
      return ok;
    };
    await volunteer.bringToFront();
    await waitFor(async () => (await validatedOn(volunteer)) + (await validatedOn(stranger)) === valid, 10_000, "validations to reach both tabs");
    const earned = Number(await volunteer.getByTestId("credits-earned").textContent());
    expect(earned).toBe(0);
    expect(await validatedOn(volunteer)).toBeGreaterThan(0);
    await keepScreenshot(volunteer, "e2e-volunteer");
    const held = Number(await stranger.getByTestId("balance").textContent());
    expect(held).toBeGreaterThan(0);

    const db = server.deps.db;
    const job = await db.job.findUniqueOrThrow({ where: { id: jobId } });
    expect(job.state).toBe("completed");
    const payouts = await db.ledgerEntry.findMany({ where: { jobId, kind: "payout", amount: { gt: 0 } } });
    expect(payouts.filter((e) => e.accountId === userAccount(job.ownerId))).toEqual([]);
    expect(payouts.reduce((s, e) => s + e.amount, 0)).toBe(job.cost);
    expect(job.cost).toBe(Math.round(held * 1000));
    expect((await auditLedger(db)).ok).toBe(true);

    await volunteer.getByRole("button", { name: "Stop" }).click();
    await stranger.getByRole("button", { name: "Stop" }).click();
    await waitFor(() => server.deps.coordinator.volunteers().length === 0, 5000, "Stop to close the volunteer sockets");
    expect(portalErrors).toEqual([]);
    expect(volunteerErrors).toEqual([]);
    expect(strangerErrors).toEqual([]);
  });
});
