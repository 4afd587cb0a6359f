import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { createUserWithKey, repoRoot, startTestServer, type TestServer } from "../helpers/server";
import { collectPageErrors, keepScreenshot, launchChromium } from "../helpers/browser";
import { balanceOf } from "../../server/services/credits/ledger";
import { escrowAccount, MILLI, userAccount } from "../../server/services/credits/accounts";
import { proposedCpuSeconds } from "../../app/(portal)/jobs/estimateText";

// The program form in Chromium: the uploaded program is timed on its first unit in the tab's
// sandbox, which prefills the CPU-seconds per unit; the estimate, the balance and the hold
// follow that figure as they do for a kernel job.
describe("pricing a program job on the jobs page", () => {
  let server: TestServer;
  let browser: Browser;
  // One credit per RCS: even a slow machine's figure (at most 5 s, the trial's limit) fits the starter balance.
  const PRICE = 1;

  beforeAll(async () => {
    server = await startTestServer({ TABGRID_UI: "on", PRICE_PER_CPU_SECOND: String(PRICE) });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it("prefills the CPU-seconds from a trial run, shows the estimate and the balance, and holds exactly the estimate", async () => {
    const { user, password } = await createUserWithKey(server.deps, "programmer@example.com");
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 1400 }, baseURL: server.url.replace("127.0.0.1", "localhost") })).newPage();
    const errors = collectPageErrors(page);
    await page.goto(`/signin?callbackUrl=${encodeURIComponent("/jobs")}`);
    await page.getByLabel("Email").fill(user.email);
    await page.getByLabel("Password").fill(password);
    await page.locator("form").getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL("**/jobs");

    // The kernel form speaks of the replication chosen: one replica is one volunteer.
    const kernelForm = page.getByRole("form", { name: "Submit a job" });
    await kernelForm.locator('input[name="replicas"]').fill("1");
    await kernelForm.getByTestId("estimate-replication").filter({ hasText: "computed by one volunteer" }).waitFor();
    expect(await kernelForm.getByTestId("estimate-breakdown").textContent()).toContain("× 1 paid result ×");
    await kernelForm.locator('input[name="replicas"]').fill("3");
    await kernelForm.getByTestId("estimate-replication").filter({ hasText: "3 different volunteers and accepted when 2 of them agree" }).waitFor();

    const form = page.getByRole("form", { name: "Run your own program" });
    const cpu = form.locator('input[name="cpuSeconds"]');
    expect(await cpu.inputValue()).toBe("1");
    await form.locator('input[name="program"]').setInputFiles(path.join(repoRoot, "examples", "js", "collatz.js"));
    const trial = form.getByTestId("trial");
    await trial.filter({ hasText: "Measured on your machine" }).waitFor({ timeout: 30_000 });
    const measured = Number(await trial.getAttribute("data-cpu-seconds"));
    expect(measured).toBeGreaterThan(0);
    expect(measured).toBeLessThan(5);
    // The field now holds the measured figure (rounded up), and the estimate follows it.
    await waitForValue(() => cpu.inputValue(), String(proposedCpuSeconds(measured)));
    const perUnit = proposedCpuSeconds(measured);
    const expected = 8 * 2 * Math.ceil(perUnit * PRICE * MILLI);
    const shown = `${(expected / MILLI).toLocaleString("en-US", { maximumFractionDigits: 3 })} credits`;
    await form.getByTestId("program-estimate").filter({ hasText: new RegExp(`^${shown}$`) }).waitFor();
    expect(await form.getByTestId("program-estimate-breakdown").textContent()).toBe(
      `8 units × 2 paid results × ${Number(perUnit.toPrecision(2))} s of reference CPU per unit × ${PRICE} credit per reference CPU-second`,
    );
    expect(await form.getByTestId("program-estimate-replication").textContent()).toContain("2 different volunteers and accepted when both agree");
    expect(await form.getByTestId("program-estimate-balance").textContent()).toBe("100 credits");

    // A figure the balance cannot cover: said so, and the job cannot be submitted.
    const submit = form.getByRole("button", { name: "Submit program job" });
    await cpu.fill("3600");
    await form.getByTestId("program-estimate-short").waitFor();
    expect(await submit.isDisabled()).toBe(true);
    await cpu.fill(String(perUnit));
    await form.getByTestId("program-estimate").filter({ hasText: new RegExp(`^${shown}$`) }).waitFor();
    expect(await form.getByTestId("program-estimate-short").count()).toBe(0);
    await keepScreenshot(page, "e2e-program-estimate");

    const before = await balanceOf(server.deps.db, userAccount(user.id));
    await submit.click();
    await page.waitForURL(/\/jobs\/j\w+$/);
    const jobId = new URL(page.url()).pathname.split("/").pop()!;
    const hold = await server.deps.db.ledgerEntry.findFirstOrThrow({ where: { jobId, kind: "hold", accountId: escrowAccount(jobId) } });
    expect(hold.amount).toBe(expected);
    expect(await balanceOf(server.deps.db, userAccount(user.id))).toBe(before - expected);
    const units = await server.deps.db.workUnit.findMany({ where: { jobId } });
    expect(units).toHaveLength(8);
    for (const u of units) expect(u.pay).toBe(Math.ceil(perUnit * PRICE * MILLI));
    expect(errors).toEqual([]);
  });
});

async function waitForValue(read: () => Promise<string>, want: string, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs;
  let got = await read();
  while (got !== want && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    got = await read();
  }
  expect(got).toBe(want);
}
