import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot, runCli, TEST_SECRET, waitFor } from "../helpers/server";
import { freshDatabase, type TestDatabase } from "../helpers/testDb";

// `tabgrid watch` against a real server process: killed (SIGKILL) it reports "down" to a
// webhook, restarted on the same port it reports "recovered".

/** The parent's environment without what would change how the children behave. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) {
    if (k.startsWith("TABGRID_") || k.startsWith("VITEST") || k === "DATABASE_URL" || k === "NODE_OPTIONS" || k === "SMTP_URL") delete env[k];
  }
  return { ...env, NO_COLOR: "1", ...extra };
}

const groups = new Set<number>();

/** Starts in its own process group, so SIGKILL reaches npx, tsx and the server it runs. */
function spawnGroup(cmd: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess & { out: () => string } {
  const child = spawn(cmd, args, { cwd: repoRoot, env, detached: true, stdio: ["ignore", "pipe", "pipe"] }) as ChildProcess & { out: () => string };
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.out = () => out;
  groups.add(child.pid!);
  child.once("exit", () => groups.delete(child.pid!));
  return child;
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals) {
  try {
    process.kill(-child.pid!, signal);
  } catch {}
}

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve({ code: child.exitCode, signal: child.signalCode })
    : new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once("exit", (code, signal) => r({ code, signal })));

async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function startReceiver() {
  const calls: Array<{ text: string }> = [];
  const server = http.createServer((req, res) => {
    let data = "";
    req.setEncoding("utf8").on("data", (d: string) => (data += d));
    req.on("end", () => {
      calls.push(JSON.parse(data) as { text: string });
      res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, calls, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/api/health`, { signal: AbortSignal.timeout(1000) });
    return res.status === 200;
  } catch {
    return false;
  }
}

describe("tabgrid watch", () => {
  let fresh: TestDatabase;
  let port: number;
  let url: string;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let serverEnv: NodeJS.ProcessEnv;
  const children: ChildProcess[] = [];

  const startServerProcess = async () => {
    const server = spawnGroup("npx", ["tsx", "server/index.ts"], serverEnv);
    children.push(server);
    await waitFor(() => healthy(url), 30_000, `the server on port ${port} (output: ${server.out()})`, 100);
    return server;
  };

  beforeAll(async () => {
    fresh = await freshDatabase("tabgrid-watch-");
    [port, receiver] = await Promise.all([freePort(), startReceiver()]);
    url = `http://127.0.0.1:${port}`;
    serverEnv = childEnv({
      TABGRID_UI: "off", TABGRID_ALERTS: "off", PORT: String(port), HOST: "127.0.0.1", DATABASE_URL: fresh.databaseUrl, DATA_DIR: fresh.dir,
      NEXTAUTH_SECRET: TEST_SECRET, NODE_ENV: "test",
    });
  });

  afterAll(async () => {
    for (const c of children) killGroup(c, "SIGKILL");
    await Promise.all(children.map(exited));
    await receiver?.close();
    await fresh?.remove();
  });

  it("notifies when the server goes down and again when it is back", async () => {
    const first = await startServerProcess();

    const watch = spawnGroup(process.execPath, [
      path.join(repoRoot, "bin", "tabgrid.js"), "watch", "--url", url, "--interval", "0.2", "--failures", "2", "--timeout", "2",
      "--webhook", receiver.url, "--json",
    ], childEnv({}));
    children.push(watch);
    const lines = () => watch.out().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
    await waitFor(() => lines().some((l) => l.state === "up"), 20_000, `watch to see the server up (output: ${watch.out()})`, 50);
    expect(receiver.calls).toHaveLength(0);

    killGroup(first, "SIGKILL");
    await exited(first);
    await waitFor(() => receiver.calls.length >= 1, 10_000, `the "down" notification (output: ${watch.out()})`, 50);
    expect(receiver.calls[0].text).toBe(`🔥 [FIRING] Tabgrid down: Tabgrid at ${url} is down: connection refused by 127.0.0.1:${port}`);
    expect(lines().map((l) => l.state)).toEqual(["up", "failing", "down"]);
    expect(lines()[2]).toMatchObject({ url, reason: `connection refused by 127.0.0.1:${port}`, failures: 2 });

    const second = await startServerProcess();
    await waitFor(() => receiver.calls.length >= 2, 10_000, `the "recovered" notification (output: ${watch.out()})`, 50);
    expect(receiver.calls[1].text).toMatch(new RegExp(`^✅ \\[RESOLVED\\] Tabgrid down: Tabgrid at ${url.replace(/\./g, "\\.")} is up again \\(down for \\d+ s`));
    expect(lines().map((l) => l.state)).toEqual(["up", "failing", "down", "recovered"]);
    expect(receiver.calls).toHaveLength(2);

    // --once: one probe, exit status says up.
    const once = await runCli(["watch", "--url", url, "--once", "--json"]);
    expect(once.code).toBe(0);
    expect(JSON.parse(once.stdout)).toMatchObject({ state: "up", url });

    killGroup(watch, "SIGTERM");
    expect(await exited(watch)).toEqual({ code: 0, signal: null });
    killGroup(second, "SIGKILL");
    await exited(second);

    const down = await runCli(["watch", "--url", url, "--once", "--json"]);
    expect(down.code).toBe(1);
    expect(JSON.parse(down.stdout)).toMatchObject({ state: "down", reason: `connection refused by 127.0.0.1:${port}` });
  });

  it("refuses bad flags with exit status 2", async () => {
    const [bad, noUrl, email] = await Promise.all([
      runCli(["watch", "--url", "ftp://example.com", "--failures", "0"]),
      runCli(["watch"]),
      runCli(["watch", "--url", "http://127.0.0.1:1", "--email-to", "ops@example.com"]),
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/tabgrid watch: .*--url must start with http/);
    expect(noUrl.code).toBe(2);
    expect(noUrl.stderr).toMatch(/--url is required/);
    expect(email.code).toBe(2);
    expect(email.stderr).toMatch(/--email-to needs an SMTP relay/);
  });
});
