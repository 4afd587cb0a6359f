import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { createPrisma } from "../../server/store/prisma";
import { databaseKind } from "../../server/store/databaseUrl";
import { freePort } from "./freePort";
import { createUser } from "../../server/services/users/users";
import { createApiKey } from "../../server/auth/apiKeys";
import { MILLI } from "../../server/services/credits/accounts";

// The server under test: a real `server/index.ts` process on a free port with its own SQLite
// file in a temp directory, migrated like a fresh install, and a consumer with an API key.
// With BENCH_DATABASE_URL=postgres://… (an account that may create databases) it runs on a
// scratch PostgreSQL database of that server instead, dropped when the server stops.

export const repoRoot = path.resolve(import.meta.dirname, "../..");

export interface BenchServer {
  url: string;
  pid: number;
  apiKey: string;
  dir: string;
  /** The server's database (for a client of the bench's own). */
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
}

export async function startBenchServer(opts: BenchServerOptions = {}): Promise<BenchServer> {
  const root = opts.root ?? repoRoot;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-bench-"));
  const database = await scratchDatabase(dir);
  const databaseUrl = database.url;
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
  let apiKey: string;
  try {
    execFileSync(process.execPath, [path.join(root, "node_modules/prisma/build/index.js"), "migrate", "deploy"], { cwd: root, env, stdio: "pipe" });
    apiKey = await createConsumer(databaseUrl);
  } catch (e) {
    // A scratch PostgreSQL database would outlive the run.
    await database.drop();
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }

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
    if (child.exitCode !== null) {
      await database.drop();
      throw new Error(`the server exited during start-up:\n${out}`);
    }
    const ok = await fetch(`${url}/api/health`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await database.drop();
      throw new Error(`the server did not answer /api/health within 60 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url, pid: child.pid!, apiKey, dir, databaseUrl, child,
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
      await database.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A new, empty database: a SQLite file in `dir`, or one on BENCH_DATABASE_URL's PostgreSQL server. */
async function scratchDatabase(dir: string): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = process.env.BENCH_DATABASE_URL;
  if (!admin || databaseKind(admin) === "sqlite") return { url: `file:${path.join(dir, "tabgrid.db")}`, drop: async () => {} };
  const name = `tabgrid_bench_${crypto.randomBytes(6).toString("hex")}`;
  const run = async (sql: string) => {
    const client = new pg.Client({ connectionString: admin });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await run(`CREATE DATABASE "${name}"`);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => run(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) };
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
