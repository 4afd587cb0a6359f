import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { startTestServer, waitFor, type TestServer } from "../helpers/server";
import { collectPageErrors, keepScreenshot, launchChromium, signUp } from "../helpers/browser";

// Chromium volunteers while signed in: its host is named after the browser and OS, and the
// owner renames it on /account.
describe("host names in the browser", () => {
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

  it("names a tab's host after its browser and OS, and its owner renames it on /account", async () => {
    const baseURL = server.url.replace("127.0.0.1", "localhost");
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, baseURL });
    const page = await context.newPage();
    const errors = collectPageErrors(page);
    await signUp(page, "hosts@example.com", "many-hosts-123");

    await page.goto("/volunteer");
    await page.getByRole("button", { name: "Start" }).click();
    await page.getByTestId("volunteer-status").filter({ hasText: "connected" }).waitFor();
    const host = await waitFor(() => server.deps.db.volunteer.findFirst({ where: { user: { email: "hosts@example.com" } } }), 10_000, "the tab's host row");
    const os = process.platform === "darwin" ? "macOS" : process.platform === "win32" ? "Windows" : "Linux";
    expect(host.name).toBe(`Chrome on ${os} · ${host.id.slice(0, 4)}`);

    await page.goto("/account");
    const row = page.getByTestId(`host-${host.id}`);
    await row.filter({ hasText: host.name! }).waitFor();
    await row.getByRole("button", { name: "Rename" }).click();
    await row.getByLabel("host name").fill("   ");
    await row.getByRole("button", { name: "Save" }).click();
    await page.getByTestId("hosts-card").getByText("A host name cannot be empty.").waitFor();
    await row.getByLabel("host name").fill("Study desktop");
    await row.getByRole("button", { name: "Save" }).click();
    await row.filter({ hasText: "Study desktop" }).getByRole("button", { name: "Rename" }).waitFor();
    await keepScreenshot(page, "account-hosts");
    expect(await server.deps.db.volunteer.findUnique({ where: { id: host.id }, select: { name: true, nameChosen: true } }))
      .toEqual({ name: "Study desktop", nameChosen: true });
    expect(errors).toEqual([]);
  }, 90_000);
});
