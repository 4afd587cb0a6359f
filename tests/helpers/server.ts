import { spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseEnv } from "../../server/env";
import { startServer } from "../../server/app";
import type { AppDeps } from "../../server/services/deps";
import { createUser } from "../../server/services/users/users";
import { createApiKey } from "../../server/auth/apiKeys";
import { MILLI } from "../../server/services/credits/accounts";
import { freshDatabase } from "./testDb";

export const repoRoot = path.resolve(import.meta.dirname, "../..");
const bin = path.join(repoRoot, "bin", "tabgrid.js");

/** A long enough, fixed secret: tests never depend on the one persisted in DATA_DIR. */
export const TEST_SECRET = "tabgrid-integration-test-secret-0123456789";

export interface TestServer {
  url: string;
  deps: AppDeps;
  /** Temp directory holding this server's database and blobs. */
  dir: string;
  databaseUrl: string;
  /** Everything the server logged, for assertions and for debugging a failure. */
  logs: string[];
  close(): Promise<void>;
}

/**
 * A real server (API only, no Next) on a free port, on a fresh copy of the migrated template
 * database (SQLite, or PostgreSQL with TEST_DATABASE_URL: see testDb.ts), with its own temp directory.
 */
export async function startTestServer(overrides: Record<string, string> = {}): Promise<TestServer> {
  const fresh = await freshDatabase();
  const { dir, databaseUrl } = fresh;
  const env = parseEnv({
    PORT: "0",
    HOST: "127.0.0.1",
    DATABASE_URL: databaseUrl,
    DATA_DIR: dir,
    COMMIT_INTERVAL_MS: "2",
    TABGRID_UI: "off",
    NEXTAUTH_SECRET: TEST_SECRET,
    NODE_ENV: "test",
    // Tests share a loaded machine: a loop starved of CPU by other processes would shed their
    // requests, and some make many calls at once. The gate's own tests turn it on (loadGate.test.ts).
    LOAD_SHED_DELAY_MS: "0",
    LOAD_SHED_MAX_REQUESTS: "0",
    // A test machine's disk may be nearly full (the floor's own test sets one: files.test.ts).
    UPLOAD_DISK_FLOOR_BYTES: "0",
    // Tests that count what audits found need them done while their short jobs run; the pacing
    // has its own test (programAudits.test.ts).
    AUDIT_CPU_SHARE: "1",
    ...overrides,
  });
  const logs: string[] = [];
  const server = await startServer(env, {
    ui: env.TABGRID_UI === "on",
    log: (m) => {
      logs.push(m);
      if (process.env.TABGRID_TEST_LOG) console.log(m);
    },
  });
  let closed = false;
  return {
    url: server.url,
    deps: server.deps,
    dir,
    databaseUrl,
    logs,
    async close() {
      if (closed) return;
      closed = true;
      await server.close();
      await fresh.remove();
    },
  };
}

/** A user with the starter grant and an API key, made the way `tabgrid admin create-user` does. */
export async function createUserWithKey(deps: AppDeps, email: string, password = "correct horse battery") {
  const user = await createUser(deps.db, { email, password }, Math.round(deps.env.STARTER_CREDITS * MILLI));
  const { key } = await createApiKey(deps.db, user.id, "integration test");
  return { user, apiKey: key, password };
}

// ---- CLI processes ---------------------------------------------------------------------

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

/** The parent's environment without anything that would change what the CLI does. */
function cliEnv(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(base)) {
    if (k.startsWith("TABGRID_") || k === "DATABASE_URL" || k === "NODE_OPTIONS" || k.startsWith("VITEST")) delete base[k];
  }
  base.NO_COLOR = "1";
  return { ...base, ...env };
}

function spawnCli(args: string[], env: Record<string, string | undefined>): ChildProcess {
  const child = spawn(process.execPath, [bin, ...args], { cwd: repoRoot, env: cliEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** Runs `tabgrid ARGS` to completion; killed (and reported as such) after timeoutMs. */
export function runCli(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 50_000): Promise<CliResult> {
  const child = spawnCli(args, env);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface VolunteerIdentity {
  volunteerId: string;
  token: string;
}

export function newIdentity(): VolunteerIdentity {
  return { volunteerId: crypto.randomBytes(12).toString("base64url"), token: crypto.randomBytes(24).toString("base64url") };
}

export interface CliVolunteer extends ChildProcess {
  identity: VolunteerIdentity;
  /** Settles when the process has exited (for whatever reason). */
  exited: Promise<void>;
  /** What the volunteer printed so far (it logs to stderr). */
  output(): string;
  /** SIGTERM, then SIGKILL if it has not exited within a few seconds. */
  stop(): Promise<void>;
}

/**
 * Starts `tabgrid volunteer --url URL --threads N` as a real process, with a known identity
 * (written to an identity file) so the test can find it on the server and in the ledger.
 */
export function startCliVolunteer(
  url: string,
  threads: number,
  opts: { apiKey?: string; identity?: VolunteerIdentity; name?: string | null; dir?: string } = {},
): CliVolunteer {
  const identity = opts.identity ?? newIdentity();
  const dir = opts.dir ?? os.tmpdir();
  const idFile = path.join(dir, `volunteer-${identity.volunteerId}.json`);
  fs.writeFileSync(idFile, JSON.stringify(identity));
  const args = ["volunteer", "--url", url, "--threads", String(threads), "--identity", idFile];
  // null: no --name, the volunteer names itself.
  if (opts.name !== null) args.push("--name", opts.name ?? "it-volunteer");
  if (opts.apiKey) args.push("--api-key", opts.apiKey);
  const child = spawnCli(args, {}) as CliVolunteer;
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.identity = identity;
  child.exited = exited;
  child.output = () => out;
  child.stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(idFile, { force: true });
  };
  return child;
}

/** Waits until the server has a socket open for this volunteer id (after its hello). */
export function waitForVolunteer(deps: AppDeps, volunteerId: string, timeoutMs = 20_000) {
  return waitFor(() => deps.coordinator.volunteers().find((v) => v.volunteerId === volunteerId), timeoutMs, `volunteer ${volunteerId} to connect`);
}

// ---- polling ---------------------------------------------------------------------------

/** Polls until `predicate` returns something truthy and returns it; fails after timeoutMs. */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  timeoutMs = 10_000,
  what: string | (() => string) = "condition",
  intervalMs = 20,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await predicate();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === "function" ? what() : what}${lastError ? ` (last error: ${(lastError as Error).message})` : ""}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
