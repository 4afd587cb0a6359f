import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { startTestServer, type TestServer } from "../helpers/server";
import { collectPageErrors, keepScreenshot, launchChromium, signUp } from "../helpers/browser";
import { auditLedger } from "../../server/services/credits/ledger";
import { userAccount } from "../../server/services/credits/accounts";

// Chromium signs up, watches the default house ad on /account to the end, claims, and sees
// the balance rise by the reward.
describe("watch an ad in the browser", () => {
  let server: TestServer;
  let browser: Browser;

  beforeAll(async () => {
    server = await startTestServer({ TABGRID_UI: "on", ADS_DEFAULT_SECONDS: "3", ADS_DEFAULT_REWARD_CREDITS: "2" });
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it("watches an ad to the end and is paid", async () => {
    const baseURL = server.url.replace("127.0.0.1", "localhost");
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, baseURL });
    const page = await context.newPage();
    const errors = collectPageErrors(page);
    await signUp(page, "viewer@example.com", "watching-ads-123");

    await page.goto("/account");
    const balance = page.getByTestId("account-balance");
    await balance.filter({ hasText: /\d/ }).waitFor();
    const before = Number((await balance.textContent())!.replace(/[^\d.]/g, ""));

    await page.getByRole("button", { name: "Watch an ad for credits" }).click();
    await page.getByTestId("ad-media").waitFor();
    const countdown = page.getByTestId("ad-countdown");
    await countdown.filter({ hasText: /remaining/ }).waitFor();
    const claim = page.getByRole("button", { name: "Claim 2 credits" });
    expect(await claim.isDisabled()).toBe(true);
    await countdown.filter({ hasText: "Done" }).waitFor({ timeout: 15_000 });
    // The image really loaded (served with its SVG type).
    expect(await page.getByTestId("ad-media").evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0)).toBe(true);
    await claim.click();
    await page.getByTestId("ad-message").filter({ hasText: "2 credits added" }).waitFor();
    await balance.filter({ hasText: String(before + 2) }).waitFor({ timeout: 10_000 });
    await page.getByRole("cell", { name: "Watched an ad" }).first().waitFor();
    await keepScreenshot(page, "e2e-watch-ad");

    const user = await server.deps.db.user.findFirstOrThrow({ where: { email: "viewer@example.com" } });
    const entries = await server.deps.db.ledgerEntry.findMany({ where: { accountId: userAccount(user.id), kind: "ad" } });
    expect(entries.map((e) => e.amount)).toEqual([2000]);
    expect((await auditLedger(server.deps.db)).ok).toBe(true);
    expect(errors).toEqual([]);
  }, 90_000);
});
