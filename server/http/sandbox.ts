import crypto from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import {
  SANDBOX_HOST_PATH, SANDBOX_HOST_SCRIPT, SANDBOX_RUNNER_PATH, sandboxHostCsp, sandboxHostHtml,
} from "../../worker/sandbox/hostPage";

// Serves the program sandbox's two resources (see worker/sandbox/hostPage.ts):
// - SANDBOX_HOST_PATH: the iframe document, under a CSP that allows only its own inline
//   script (by hash), blob: workers and WebAssembly, and no network at all. The app embeds
//   it as <iframe sandbox="allow-scripts">, so it runs in an opaque origin: it never sees the
//   app's cookies (it reads none, sets none) or its window.
// - SANDBOX_RUNNER_PATH: the workers' runner script (worker/sandbox/browserWorker.ts bundled
//   by esbuild on first request), which the app fetches and hands to the iframe as text
//   (the iframe itself cannot fetch anything).

const hostHtml = sandboxHostHtml();
const hostCsp = sandboxHostCsp(crypto.createHash("sha256").update(SANDBOX_HOST_SCRIPT, "utf8").digest("base64"));

const COMMON_HEADERS = {
  "x-content-type-options": "nosniff",
  "cross-origin-resource-policy": "same-origin",
  "referrer-policy": "no-referrer",
};

let runner: Promise<string> | undefined;

/** The runner bundle (a classic script, no imports); built once per process. */
export function sandboxRunnerSource(): Promise<string> {
  runner ??= esbuild
    .build({
      entryPoints: [fileURLToPath(new URL("../../worker/sandbox/browserWorker.ts", import.meta.url))],
      bundle: true,
      write: false,
      format: "iife",
      platform: "browser",
      target: "es2022",
      minify: true,
      legalComments: "none",
      logLevel: "silent",
    })
    .then((r) => r.outputFiles[0].text);
  runner.catch(() => (runner = undefined));
  return runner;
}

/** GET/HEAD of the sandbox's resources; returns false for any other path. */
export async function serveSandbox(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> {
  if (pathname !== SANDBOX_HOST_PATH && pathname !== SANDBOX_RUNNER_PATH) return false;
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", ...COMMON_HEADERS }).end();
    return true;
  }
  if (pathname === SANDBOX_HOST_PATH) {
    res.writeHead(200, {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": hostCsp,
      "cache-control": "no-cache",
      ...COMMON_HEADERS,
    });
    res.end(req.method === "HEAD" ? undefined : hostHtml);
    return true;
  }
  const source = await sandboxRunnerSource();
  res.writeHead(200, {
    "content-type": "text/javascript; charset=utf-8",
    "cache-control": "no-cache",
    ...COMMON_HEADERS,
  });
  res.end(req.method === "HEAD" ? undefined : source);
  return true;
}
