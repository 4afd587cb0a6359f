// Consumer programs in real Chromium, from a page of the real app: the sandbox iframe
// (served by the server with its CSP), its blob: workers, the generic pool's time limit and
// worker replacement, and what a program cannot reach: the network, cookies, the app.
import http from "node:http";
import path from "node:path";
import * as esbuild from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, BrowserContext, CDPSession, Page } from "playwright-core";
import { repoRoot, startTestServer, type TestServer } from "../helpers/server";
import { launchChromium } from "../helpers/browser";
import { serveSandbox } from "../../server/http/sandbox";
import { compileJsProgram } from "../../worker/sandbox/compileJs";
import { SANDBOX_HOST_PATH } from "../../worker/sandbox/hostPage";
import { JS, WAT, wat } from "../unit/sandboxPrograms";

type Outcome = { ok: true; output: unknown; ms: number } | { ok: false; error: string };

/** Bundles the real sandboxPool module for the page (the app's own bundle is Turbopack's). */
async function harness(): Promise<string> {
  const r = await esbuild.build({
    stdin: {
      contents: `import { createSandboxPool, SANDBOX_CRASHED } from "./worker/browser/sandboxPool.ts";
        window.__sandbox = { pool: createSandboxPool({ threads: 2 }), single: createSandboxPool({ threads: 1 }), SANDBOX_CRASHED };
        window.__run = (t, timeoutMs, poolName = "pool") => {
          const code = typeof t.code === "string" ? t.code : new Uint8Array(t.code);
          const input = t.bytes ? new Uint8Array(t.input) : t.input;
          const task = { kernel: "program", params: { kind: t.kind, hash: t.hash, code, params: t.params ?? null, memoryLimitBytes: t.memoryMb * 1048576, inputKind: t.inputKind, ...(t.inputRef ? { inputRef: t.inputRef } : {}) }, input };
          return window.__sandbox[poolName].run(task, "e2e", { timeoutMs }).then(
            (r) => ({ ok: true, output: r.output, ms: r.ms }),
            (e) => ({ ok: false, error: String((e && e.message) || e) }),
          );
        };`,
      resolveDir: repoRoot,
      sourcefile: "harness.ts",
      loader: "ts",
    },
    bundle: true, write: false, format: "iife", platform: "browser", target: "es2022", logLevel: "silent",
  });
  return r.outputFiles[0].text;
}

describe("program sandbox in Chromium", () => {
  let server: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let cdp: CDPSession;
  let sandboxOnly: http.Server | undefined;
  const bait = { hits: 0, server: undefined as http.Server | undefined, url: "" };
  const scripts: Record<string, string> = {};
  const wasm: Record<string, number[]> = {};

  /** Evaluates in the app page through a raw CDP session: it outlives Playwright's idea that a crashed iframe crashed the page. */
  async function evaluate<T>(fn: string, arg?: unknown): Promise<T> {
    const r = (await cdp.send("Runtime.evaluate", { expression: `(${fn})(${JSON.stringify(arg ?? null)})`, awaitPromise: true, returnByValue: true })) as {
      result: { value: T };
      exceptionDetails?: { text: string; exception?: { description?: string } };
    };
    if (r.exceptionDetails) throw new Error(r.exceptionDetails.exception?.description ?? r.exceptionDetails.text);
    return r.result.value;
  }

  const runJs = (name: string, input: unknown, timeoutMs = 10_000, extra: Record<string, unknown> = {}) =>
    evaluate<Outcome>("(a) => window.__run(a.task, a.timeoutMs)", { task: { kind: "js", hash: `js-${name}`, code: scripts[name], input, memoryMb: 64, params: { scale: 2 }, ...extra }, timeoutMs });
  const runWasm = (name: string, input: string, timeoutMs = 10_000) =>
    evaluate<Outcome>("(a) => window.__run(a.task, a.timeoutMs)", { task: { kind: "wasm", hash: `wasm-${name}`, code: wasm[name], input, memoryMb: 64 }, timeoutMs });

  /** Whatever failed before, the pool still computes: the failure stayed in its task. */
  async function expectNextTaskSucceeds() {
    await expect(runJs("good", { n: 4 })).resolves.toMatchObject({ ok: true, output: { double: 8 } });
  }

  beforeAll(async () => {
    for (const [name, src] of Object.entries(JS)) scripts[name] = (await compileJsProgram(src)).script;
    for (const name of ["reverse", "traps", "loops"] as const) wasm[name] = Array.from(await wat(WAT[name]));
    bait.server = http.createServer((req, res) => {
      bait.hits++;
      res.writeHead(200, { "access-control-allow-origin": "*" }).end("secret");
    });
    await new Promise<void>((r) => bait.server!.listen(0, "127.0.0.1", r));
    bait.url = `http://127.0.0.1:${(bait.server.address() as { port: number }).port}/steal`;

    server = await startTestServer({ TABGRID_UI: "on" });
    browser = await launchChromium();
    context = await browser.newContext({ baseURL: server.url });
    await context.addCookies([{ name: "tabgrid-session", value: "app-secret", url: server.url }]);
    // Until server/app.ts mounts serveSandbox, answer /sandbox/* from a server that does, so
    // the test exercises the real handler either way.
    const mounted = (await fetch(`${server.url}${SANDBOX_HOST_PATH}`)).headers.get("content-security-policy");
    if (!mounted?.includes("connect-src 'none'")) {
      sandboxOnly = http.createServer((req, res) => {
        void serveSandbox(req, res, (req.url ?? "/").split("?")[0]).then((done) => done || res.writeHead(404).end());
      });
      await new Promise<void>((r) => sandboxOnly!.listen(0, "127.0.0.1", r));
      const origin = `http://127.0.0.1:${(sandboxOnly.address() as { port: number }).port}`;
      await context.route("**/sandbox/**", async (route) => {
        const u = new URL(route.request().url());
        await route.fulfill({ response: await route.fetch({ url: origin + u.pathname }) });
      });
    }
    page = await context.newPage();
    cdp = await context.newCDPSession(page);
    await page.goto("/");
    await page.addScriptTag({ content: await harness() });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    sandboxOnly?.close();
    bait.server?.close();
  });

  it("serves the sandbox document with a CSP that forbids the network, and no cookies", async () => {
    const origin = sandboxOnly ? `http://127.0.0.1:${(sandboxOnly.address() as { port: number }).port}` : server.url;
    const res = await fetch(`${origin}${SANDBOX_HOST_PATH}`, { headers: { cookie: "tabgrid-session=app-secret" } });
    expect(res.status).toBe(200);
    const csp = res.headers.get("content-security-policy")!;
    expect(csp).toMatch(/^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/]+=' blob: 'wasm-unsafe-eval'; worker-src blob:; connect-src 'none'/);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("cross-origin-resource-policy")).toBe("same-origin");
    expect(res.headers.get("set-cookie")).toBeNull();
  });

  it("computes a JS program and a WASM program", async () => {
    await expect(runJs("good", { n: 21 })).resolves.toEqual({ ok: true, output: { double: 42, scale: 2, text: "héllo" }, ms: expect.any(Number) });
    await expect(runJs("asyncGood", "four")).resolves.toMatchObject({ ok: true, output: 4 });
    const bytes = await evaluate<Outcome>("(a) => window.__run(a, 10000)", { kind: "js", hash: "js-bytes", code: scripts.bytes, input: [1, 2, 250], bytes: true, memoryMb: 64 });
    expect(bytes).toMatchObject({ ok: true, output: { sum: 253, len: 3, isBytes: true } });
    const r = await runWasm("reverse", "sandbox");
    expect(r.ok && Buffer.from((r.output as { b64: string }).b64, "base64").toString()).toBe("xobdnas");
  });

  it("runs programs in an opaque-origin iframe that can reach neither the app nor its cookies", async () => {
    const frame = page.frames().find((f) => f.url().endsWith(SANDBOX_HOST_PATH));
    expect(frame, "the sandbox iframe").toBeTruthy();
    expect(await page.locator("iframe").first().getAttribute("sandbox")).toBe("allow-scripts");
    const inside = await frame!.evaluate(() => {
      const out: Record<string, string> = { origin: self.origin };
      try {
        out.cookie = `readable: ${JSON.stringify(document.cookie)}`;
      } catch (e) {
        out.cookie = `refused: ${(e as Error).name}`;
      }
      try {
        out.parent = `readable: ${window.parent.document.title}`;
      } catch (e) {
        out.parent = `refused: ${(e as Error).name}`;
      }
      return out;
    });
    expect(inside).toEqual({ origin: "null", cookie: "refused: SecurityError", parent: "refused: SecurityError" });
  });

  it("keeps a blob input in the worker: sent once, and every unit gets its own copy of it", async () => {
    const { script } = await compileJsProgram("export function run(input) { let s = 0; for (const b of input) s += b; input.fill(0); return s; }");
    const run = (inputRef: string, input: number[]) =>
      evaluate<Outcome>("(a) => window.__run(a, 10000, 'single')", { kind: "js", hash: "js-sums-then-zeroes", code: script, input, bytes: true, inputRef, memoryMb: 64 });
    await expect(run("shard-a", [1, 2, 3])).resolves.toMatchObject({ ok: true, output: 6 });
    // The same key again: the worker computes on the bytes it kept (a key names a blob's hash, so
    // real bytes under it never differ; these do, to show which were used), intact although the
    // program zeroed the copy it was given.
    await expect(run("shard-a", [9, 9, 9])).resolves.toMatchObject({ ok: true, output: 6 });
    await expect(run("shard-a", [9, 9, 9])).resolves.toMatchObject({ ok: true, output: 6 });
    await expect(run("shard-b", [9, 9, 9])).resolves.toMatchObject({ ok: true, output: 27 });
  });

  it("fails a program that throws, and only that task", async () => {
    const [bad, good] = await Promise.all([runJs("throws", null), runJs("good", { n: 1 })]);
    expect(bad).toEqual({ ok: false, error: expect.stringMatching(/^TypeError: boom: the input was bad \(at line \d+, column \d+ of the compiled program\)$/) });
    expect(good).toMatchObject({ ok: true, output: { double: 2 } });
    await expectNextTaskSucceeds();
  });

  it("stops an infinite loop at the time limit and replaces its worker", async () => {
    const t0 = Date.now();
    await expect(runJs("loops", null, 1500)).resolves.toEqual({ ok: false, error: "time limit of 1.5 s exceeded" });
    expect(Date.now() - t0).toBeLessThan(6000);
    await expectNextTaskSucceeds();
    await expect(runWasm("loops", "x", 1000)).resolves.toEqual({ ok: false, error: "time limit of 1 s exceeded" });
    await expect(runWasm("traps", "x")).resolves.toEqual({ ok: false, error: "WebAssembly trap: unreachable" });
    await expectNextTaskSucceeds();
  });

  it("blocks a program's fetch with the CSP: nothing reaches the network", async () => {
    const r = await runJs("fetches", null, 10_000, { code: scripts.fetches.replace("http://127.0.0.1:9/steal?x=1", bait.url) });
    expect(r).toEqual({ ok: false, error: expect.stringMatching(/^TypeError: Failed to fetch/) });
    const eval_ = await runJs("escapes", null);
    expect(eval_.ok).toBe(false);
    expect(bait.hits).toBe(0);
    await expectNextTaskSucceeds();
  });

  it("survives a program that exhausts its memory: its task fails, the sandbox restarts, the next task computes", async () => {
    const r = await runJs("heapHog", null, 90_000);
    expect(r).toEqual({ ok: false, error: await evaluate<string>("() => window.__sandbox.SANDBOX_CRASHED") });
    await expectNextTaskSucceeds();
    // The app page itself never went down.
    expect(await evaluate<string>("() => document.title")).toMatch(/Tabgrid/);
  }, 120_000);
});
