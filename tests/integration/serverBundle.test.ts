import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SANDBOX_RUNNER_PATH } from "../../worker/sandbox/hostPage";
import { repoRoot } from "../helpers/server";
import { freePort, startServerProcess, tempDatabase, type ServerProcess } from "../helpers/serverProcess";

// The server as `npm run serve` runs it: plain node on its bundle (scripts/build-server.mjs),
// with the pages. The bundle's modules find the files beside their sources (package.json,
// Prisma's engine, the sandbox runner's sources, bundled on request), which a bundle that kept
// its own URL for every module would not.

describe("the server's bundle", () => {
  let tmp: Awaited<ReturnType<typeof tempDatabase>>;
  let server: ServerProcess;

  beforeAll(async () => {
    tmp = await tempDatabase();
    server = await startServerProcess({
      port: await freePort(), databaseUrl: tmp.databaseUrl, dataDir: tmp.dir, env: { TABGRID_UI: "on", NODE_ENV: "production" },
    });
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await tmp?.remove();
  });

  it("runs under plain node, without a TypeScript loader", () => {
    const args = server.child.spawnargs;
    expect(args.some((a) => /test-\d+[\\/]index\.mjs$/.test(a))).toBe(true);
    expect(args.join(" ")).not.toMatch(/tsx/);
  });

  it("serves health with the package's version, a page and the sandbox runner", async () => {
    const health = (await (await fetch(`${server.url}/api/health`)).json()) as { status: string; version: string };
    const pkg = JSON.parse(fs.readFileSync(`${repoRoot}/package.json`, "utf8")) as { version: string };
    expect(health).toMatchObject({ status: "ok", version: pkg.version });

    const page = await fetch(`${server.url}/volunteer`);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<html/i);

    const runner = await fetch(`${server.url}${SANDBOX_RUNNER_PATH}`);
    expect(runner.status).toBe(200);
    expect(runner.headers.get("content-type")).toMatch(/javascript/);
    expect((await runner.text()).length).toBeGreaterThan(1000);
  });
});
