import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { createPrisma } from "../../server/store/prisma";
import { freePort } from "./freePort";
import { createUser } from "../../server/services/users/users";
import { createApiKey } from "../../server/auth/apiKeys";
import { MILLI } from "../../server/services/credits/accounts";

// The server under test: a real `server/index.ts` process on a free port with its own SQLite
// file in a temp directory (or its own PostgreSQL database), migrated like a fresh install,
// and a consumer with an API key.

export const repoRoot = path.resolve(import.meta.dirname, "../..");

export interface BenchServer {
  url: string;
  pid: number;
  apiKey: string;
  dir: string;
  databaseUrl: string;
  child: ChildProcess;
  /** Everything it printed (the last 64 kB). */
  output(): string;
  alive(): boolean;
  stop(): Promise<void>;
}


export interface BenchServerOptions {
  /** TABGRID_UI: the pages too (as deployed) or the API alone. */
  ui?: boolean;
  env?: Record<string, string>;
  /** The checkout whose server runs (default: this one), to compare two versions in one run. */
  root?: string;
  /** Extra node flags for the server (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /**
   * A PostgreSQL server (postgres://… of an account that may create databases) to run on, in a
   * database of the run's own, dropped at stop; default: a SQLite file in the temp directory.
   */
  postgresUrl?: string;
}

export async function startBenchServer(opts: BenchServerOptions = {}): Promise<BenchServer> {
  const root = opts.root ?? repoRoot;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-bench-"));
  const pgName = `tabgrid_bench_${crypto.randomBytes(4).toString("hex")}`;
  if (opts.postgresUrl) await adminQuery(opts.postgresUrl, `CREATE DATABASE "${pgName}"`);
  const databaseUrl = opts.postgresUrl ? withDatabase(opts.postgresUrl, pgName) : `file:${path.join(dir, "tabgrid.db")}`;
  const env = {} as NodeJS.ProcessEnv;
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("TABGRID_") && k !== "DATABASE_URL" && k !== "NODE_OPTIONS" && !k.startsWith("VITEST")) env[k] = v;
  }
  const port = await freePort();
  Object.assign(env, {
    PORT: String(port), HOST: "127.0.0.1", DATABASE_URL: databaseUrl, DATA_DIR: path.join(dir, "data"),
    NEXTAUTH_SECRET: "tabgrid-bench-secret-0123456789abcdef", TABGRID_UI: opts.ui === false ? "off" : "on",
    NODE_ENV: "production", STARTER_CREDITS: "1000000000", MAX_CHUNKS: "10000", METRICS_INTERVAL_SECONDS: "1",
    // Alert rules would page about the load we make on purpose.
    TABGRID_ALERTS: "off",
    ...opts.env,
  });
  execFileSync(process.execPath, [path.join(root, "node_modules/prisma/build/index.js"), "migrate", "deploy"], { cwd: root, env, stdio: "pipe" });
  const apiKey = await createConsumer(databaseUrl);

  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), "--import", "tsx", "server/index.ts"], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const keep = (d: string) => (out = (out + d).slice(-65_536));
  child.stdout!.setEncoding("utf8").on("data", keep);
  child.stderr!.setEncoding("utf8").on("data", keep);
  const onExit = () => child.kill("SIGKILL");
  process.once("exit", onExit);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited during start-up:\n${out}`);
    const ok = await fetch(`${url}/api/health`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`the server did not answer /api/health within 60 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url, pid: child.pid!, apiKey, dir, child, databaseUrl,
    output: () => out,
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      process.off("exit", onExit);
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
      fs.rmSync(dir, { recursive: true, force: true });
      if (opts.postgresUrl) await adminQuery(opts.postgresUrl, `DROP DATABASE IF EXISTS "${pgName}" WITH (FORCE)`);
    },
  };
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

async function adminQuery(url: string, sql: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

async function createConsumer(databaseUrl: string): Promise<string> {
  const db = createPrisma(databaseUrl);
  try {
    const user = await createUser(db, { email: "bench@tabgrid.local", password: "bench password 1234", admin: true }, 1_000_000_000 * MILLI);
    return (await createApiKey(db, user.id, "benchmark")).key;
  } finally {
    await db.$disconnect();
  }
}

/**
 * `n` more consumers with API keys on a running bench server, e.g. to spread submissions over
 * accounts that each have their own rate limit. Keys are returned in order.
 */
export async function createConsumers(server: Pick<BenchServer, "databaseUrl">, n: number, prefix = "consumer"): Promise<string[]> {
  const db = createPrisma(server.databaseUrl);
  try {
    return await Promise.all(Array.from({ length: n }, async (_, i) => {
      const user = await createUser(db, { email: `${prefix}-${i}@tabgrid.local`, password: "bench password 1234" }, 1_000_000_000 * MILLI);
      return (await createApiKey(db, user.id, "benchmark")).key;
    }));
  } finally {
    await db.$disconnect();
  }
}
