import crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { createPrisma, type Db } from "../../server/store/prisma";
import { createUser } from "../../server/services/users/users";
import { createApiKey } from "../../server/auth/apiKeys";
import { MILLI } from "../../server/services/credits/accounts";
import { trpc } from "../helpers/clients";
import { freePort, startServerProcess, type ServerProcess } from "../helpers/serverProcess";
import { startCliVolunteer, type CliVolunteer } from "../helpers/server";
import { freshPostgres, type TestDatabase } from "../helpers/testDb";
import { collectPageErrors, keepScreenshot, launchChromium, signIn } from "../helpers/browser";

// Cluster mode in Chromium: two nodes with their pages, one PostgreSQL, one Redis. The admin
// signs in on node A and sees both nodes; the same session works on node B; a job computed by
// the only volunteer, on node B, is followed live on node A's job page to its result.
const REDIS = process.env.REDIS_TEST_URL ?? "redis://127.0.0.1:6379";

describe("a cluster seen in the browser", () => {
  let pg: TestDatabase;
  let db: Db;
  let browser: Browser;
  let a: ServerProcess;
  let b: ServerProcess;
  let volunteer: CliVolunteer;

  beforeAll(async () => {
    pg = await freshPostgres();
    db = createPrisma(pg.databaseUrl);
    const prefix = `tabgrid-e2e-${crypto.randomBytes(4).toString("hex")}:`;
    const [portA, portB] = [await freePort(), await freePort()];
    const env = (id: string) => ({ TABGRID_UI: "on", REDIS_URL: REDIS, REDIS_PREFIX: prefix, NODE_ID: id, SPOT_CHECKS: "off", TABGRID_ALERTS: "off" });
    [a, b] = await Promise.all([
      startServerProcess({ port: portA, databaseUrl: pg.databaseUrl, dataDir: pg.dir, env: env("node-a") }),
      startServerProcess({ port: portB, databaseUrl: pg.databaseUrl, dataDir: pg.dir, env: env("node-b") }),
    ]);
    browser = await launchChromium();
  }, 180_000);
  afterAll(async () => {
    await volunteer?.stop();
    await browser?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await db?.$disconnect();
    await pg?.remove();
  });

  it("the admin sees every node and volunteer from node A, and node A's job page follows a job computed on node B", async () => {
    const admin = await createUser(db, { email: "admin@example.com", password: "correct horse battery", admin: true }, 1000 * MILLI);
    const { key } = await createApiKey(db, admin.id, "e2e");
    volunteer = startCliVolunteer(b.url, 2, { name: "on-node-b", dir: pg.dir });

    const hostA = a.url.replace("127.0.0.1", "localhost");
    const hostB = b.url.replace("127.0.0.1", "localhost");
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, baseURL: hostA });
    const page = await context.newPage();
    const errors = collectPageErrors(page);
    await signIn(page, "admin@example.com", "correct horse battery", "/admin");
    const nodes = page.getByTestId("nodes");
    await nodes.getByText("Cluster: 2 nodes").waitFor({ timeout: 20_000 });
    await page.getByTestId("node-node-b").waitFor();
    // node B's row counts its volunteer (presence is refreshed every 2 s) once the CLI volunteer has
    // started, its benchmark included: over 20 s on a loaded machine.
    await page.waitForFunction(() => document.querySelector('[data-testid="node-node-b"] td:nth-child(3)')?.textContent === "1", undefined, { timeout: 60_000 });
    expect(await page.getByTestId("node-node-a").locator("td").nth(1).textContent()).toBe("up");
    await keepScreenshot(page, "cluster-admin-nodes");

    // The session signed by node A is good on node B (one NEXTAUTH_SECRET).
    const onB = await context.newPage();
    await onB.goto(`${hostB}/admin`);
    await onB.getByTestId("nodes").getByText("node-b (this one)").waitFor({ timeout: 20_000 });
    await onB.close();

    // A job submitted through node B, computed by node B's volunteer, followed on node A. The
    // volunteer leaves first and comes back once node A's page shows the job waiting: a job
    // this small can end before a page loads, and then the page would prove nothing live.
    await volunteer.stop();
    const { id } = await trpc(b.url, key).jobs.submit.mutate({
      kernel: "pi", chunks: 400, params: { samples: 400 * 400_000 }, replication: { replicas: 1, adaptive: false },
    });
    await page.goto(`/jobs/${id}`);
    await page.getByTestId("job-state").filter({ hasText: "queued" }).waitFor({ timeout: 20_000 });
    expect(await page.getByTestId("units-done").textContent()).toBe("0 / 400");
    volunteer = startCliVolunteer(b.url, 2, { name: "on-node-b", dir: pg.dir });
    await page.getByTestId("job-state").filter({ hasText: "completed" }).waitFor({ timeout: 60_000 });
    expect(await page.getByTestId("units-done").textContent()).toBe("400 / 400");
    await page.getByTestId("result").waitFor();
    await keepScreenshot(page, "cluster-job-on-other-node");
    expect(errors).toEqual([]);
  }, 180_000);
});
