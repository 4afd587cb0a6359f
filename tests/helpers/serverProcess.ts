import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ownServerBundle, serverProcessEnv } from "../../scripts/build-server.mjs";
import { freshDatabase } from "./testDb";
import { repoRoot, TEST_SECRET, waitFor } from "./server";

// The server as its own process, for tests that kill it the hard way and start it again on the
// same port and database. It runs as `npm run serve` runs it: plain node on the server's bundle
// (scripts/build-server.mjs), built from the sources once per test process.

/** A port nobody listens on right now (the OS picks it; it is reused for restarts). */
export { freePort } from "../../bench/lib/freePort";

/** A temp directory and a fresh copy of the migrated template database (see testDb.ts). */
export function tempDatabase() {
  return freshDatabase("tabgrid-proc-");
}

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  /** Everything it printed so far. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL: no shutdown handler runs, nothing queued is committed. */
  kill9(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (commits what is queued), then SIGKILL after a few seconds. */
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

/** Starts the API-only server on `port` and waits until /api/health answers. */
export async function startServerProcess(opts: { port: number; databaseUrl: string; dataDir: string; env?: Record<string, string> }): Promise<ServerProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) {
    if (k.startsWith("TABGRID_") || k === "DATABASE_URL" || k === "NODE_OPTIONS" || k.startsWith("VITEST")) delete env[k];
  }
  Object.assign(env, {
    PORT: String(opts.port), HOST: "127.0.0.1", DATABASE_URL: opts.databaseUrl, DATA_DIR: opts.dataDir,
    NEXTAUTH_SECRET: TEST_SECRET, TABGRID_UI: "off", NODE_ENV: "test", COMMIT_INTERVAL_MS: "2", UPLOAD_DISK_FLOOR_BYTES: "0", ...opts.env,
  });
  const bundle = await ownServerBundle("test");
  const child = spawn(process.execPath, ["--enable-source-maps", bundle], { cwd: repoRoot, env: serverProcessEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  const url = `http://127.0.0.1:${opts.port}`;
  let dead = false;
  void exited.then(() => (dead = true));
  await waitFor(
    async () => {
      if (dead) throw new Error(`the server exited during start-up:\n${out}`);
      const res = await fetch(`${url}/api/health`).catch(() => undefined);
      return res?.ok;
    },
    30_000,
    `the server on port ${opts.port} to answer /api/health`,
    50,
  ).catch((e: Error) => {
    child.kill("SIGKILL");
    throw new Error(`${e.message}\n--- server output ---\n${out}`);
  });
  return {
    url,
    child,
    output: () => out,
    exited,
    kill9: () => {
      child.kill("SIGKILL");
      return exited;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
