import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Redis } from "ioredis";
import pg from "pg";
import { createPrisma } from "../../server/store/prisma";
import { freePort } from "./freePort";
import { createUser } from "../../server/services/users/users";
import { createApiKey } from "../../server/auth/apiKeys";
import { MILLI } from "../../server/services/credits/accounts";
import type { Summary } from "./stats";

// The server under test: a real `server/index.ts` process on a free port with its own SQLite
// file in a temp directory (or its own PostgreSQL database), migrated like a fresh install,
// and a consumer with an API key. Or several such processes, the nodes of one cluster on one
// PostgreSQL database and one Redis key prefix of the run's own.

export const repoRoot = path.resolve(import.meta.dirname, "../..");

export interface BenchNode {
  url: string;
  pid: number;
  /** NODE_ID in cluster mode (node-1, node-2, …), else null. */
  nodeId: string | null;
  child: ChildProcess;
  /** Everything it printed (the last 64 kB). */
  output(): string;
  alive(): boolean;
}

export interface BenchServer extends BenchNode {
  apiKey: string;
  dir: string;
  databaseUrl: string;
  stop(): Promise<void>;
}

/** Several server processes of one cluster (one PostgreSQL database, one Redis prefix). */
export interface BenchCluster {
  nodes: BenchNode[];
  /** A consumer's key, valid on every node (one database). */
  apiKey: string;
  dir: string;
  databaseUrl: string;
  /** The scratch database's name (PostgreSQL), to tell its backends from others'. */
  databaseName: string | null;
  /** The Redis key prefix of this run's cluster, or null without cluster mode. */
  redisPrefix: string | null;
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

export interface BenchClusterOptions extends BenchServerOptions {
  /** How many server processes (default 1). */
  nodes?: number;
  /**
   * Cluster mode (REDIS_URL, REDIS_PREFIX, NODE_ID): a Redis the nodes share, with a key prefix
   * of the run's own, deleted at stop. Needs postgresUrl. Required for more than one node.
   */
  redisUrl?: string;
}

/** One server process, as `npm start` runs it. */
export async function startBenchServer(opts: BenchServerOptions = {}): Promise<BenchServer> {
  const cluster = await startBenchCluster({ ...opts, nodes: 1, redisUrl: undefined });
  const node = cluster.nodes[0];
  return { ...node, output: node.output, alive: node.alive, apiKey: cluster.apiKey, dir: cluster.dir, databaseUrl: cluster.databaseUrl, stop: cluster.stop };
}

/**
 * `nodes` server processes on one database, migrated like a fresh install, with a consumer
 * and an API key. In cluster mode they share the database, Redis (under a prefix of the run's
 * own), DATA_DIR and NEXTAUTH_SECRET, as `npm run cluster` starts them; each has its NODE_ID.
 */
export async function startBenchCluster(opts: BenchClusterOptions = {}): Promise<BenchCluster> {
  const root = opts.root ?? repoRoot;
  const count = opts.nodes ?? 1;
  if (count > 1 && !opts.redisUrl) throw new Error("several nodes need cluster mode (a Redis URL)");
  if (opts.redisUrl && !opts.postgresUrl) throw new Error("cluster mode needs PostgreSQL (a SQLite file belongs to one process)");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-bench-"));
  const runId = crypto.randomBytes(4).toString("hex");
  const pgName = `tabgrid_bench_${runId}`;
  const redisPrefix = opts.redisUrl ? `tabgrid-bench-${runId}:` : null;
  if (opts.postgresUrl) await adminQuery(opts.postgresUrl, `CREATE DATABASE "${pgName}"`);
  const databaseUrl = opts.postgresUrl ? withDatabase(opts.postgresUrl, pgName) : `file:${path.join(dir, "tabgrid.db")}`;
  const env = {} as NodeJS.ProcessEnv;
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("TABGRID_") && !k.startsWith("REDIS_") && k !== "NODE_ID" && k !== "DATABASE_URL" && k !== "NODE_OPTIONS" && !k.startsWith("VITEST")) env[k] = v;
  }
  Object.assign(env, {
    HOST: "127.0.0.1", DATABASE_URL: databaseUrl, DATA_DIR: path.join(dir, "data"),
    NEXTAUTH_SECRET: "tabgrid-bench-secret-0123456789abcdef", TABGRID_UI: opts.ui === false ? "off" : "on",
    NODE_ENV: "production", STARTER_CREDITS: "1000000000", MAX_CHUNKS: "10000", METRICS_INTERVAL_SECONDS: "1",
    // Alert rules would page about the load we make on purpose.
    TABGRID_ALERTS: "off",
    // Every volunteer of the fleet (1,000, and the stress's burst of 5,000) is new and comes from 127.0.0.1.
    NEW_VOLUNTEERS_PER_ADDRESS: "1000000",
    VOLUNTEER_SOCKETS_PER_ADDRESS: "1000000",
    CONNECTIONS_PER_ADDRESS: "1000000",
    ...(opts.redisUrl ? { REDIS_URL: opts.redisUrl, REDIS_PREFIX: redisPrefix! } : {}),
    ...opts.env,
  });
  const nodes: BenchNode[] = [];
  const cleanUp = async () => {
    fs.rmSync(dir, { recursive: true, force: true });
    if (opts.postgresUrl) await adminQuery(opts.postgresUrl, `DROP DATABASE IF EXISTS "${pgName}" WITH (FORCE)`);
    if (opts.redisUrl) await deleteRedisKeys(opts.redisUrl, redisPrefix!).catch(() => undefined);
  };
  let apiKey: string;
  try {
    execFileSync(process.execPath, [path.join(root, "node_modules/prisma/build/index.js"), "migrate", "deploy"], { cwd: root, env, stdio: "pipe" });
    apiKey = await createConsumer(databaseUrl);
    const ports: number[] = [];
    while (ports.length < count) {
      const port = await freePort();
      if (!ports.includes(port)) ports.push(port);
    }
    const started = await Promise.allSettled(ports.map(async (port, i) => {
      const nodeId = opts.redisUrl ? `node-${i + 1}` : null;
      const node = await startNode(root, {
        ...env, PORT: String(port), ...(nodeId ? { NODE_ID: nodeId, PUBLIC_URL: `http://127.0.0.1:${port}` } : {}),
      }, port, nodeId, opts.nodeArgs ?? [], (n) => nodes.push(n));
      return node;
    }));
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    // In the order of their NODE_ID: node 1 first.
    nodes.splice(0, nodes.length, ...started.map((r) => (r as PromiseFulfilledResult<BenchNode>).value));
  } catch (e) {
    await Promise.all(nodes.map((n) => stopNode(n)));
    await cleanUp().catch(() => undefined);
    throw e;
  }
  return {
    nodes, apiKey, dir, databaseUrl, databaseName: opts.postgresUrl ? pgName : null, redisPrefix,
    async stop() {
      await Promise.all(nodes.map((n) => stopNode(n)));
      await cleanUp();
    },
  };
}

/**
 * How to start `root`'s server: its bundle, built now from its sources, the way `npm run serve`
 * runs it; a checkout from before the bundle existed (`--root`) runs its sources under tsx.
 */
/** The checkout's server: its entry's arguments, and the environment it starts with as `npm run serve` starts it. */
async function serverEntry(root: string, env: NodeJS.ProcessEnv): Promise<{ args: string[]; env: NodeJS.ProcessEnv }> {
  const script = path.join(root, "scripts", "build-server.mjs");
  if (!fs.existsSync(script)) return { args: ["--import", "tsx", "server/index.ts"], env };
  const mod = (await import(pathToFileURL(script).href)) as Partial<typeof import("../../scripts/build-server.mjs")> & Pick<typeof import("../../scripts/build-server.mjs"), "ownServerBundle">;
  // An older checkout (--root) may predate serverProcessEnv: it starts as it did then.
  return { args: [await mod.ownServerBundle("bench")], env: mod.serverProcessEnv ? mod.serverProcessEnv(env) : env };
}

const exitHooks = new Map<ChildProcess, () => void>();

async function startNode(root: string, env: NodeJS.ProcessEnv, port: number, nodeId: string | null, nodeArgs: string[], spawned: (n: BenchNode) => void): Promise<BenchNode> {
  const entry = await serverEntry(root, env);
  const child = spawn(process.execPath, [...nodeArgs, ...entry.args], { cwd: root, env: entry.env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const keep = (d: string) => (out = (out + d).slice(-65_536));
  child.stdout!.setEncoding("utf8").on("data", keep);
  child.stderr!.setEncoding("utf8").on("data", keep);
  const onExit = () => child.kill("SIGKILL");
  process.once("exit", onExit);
  exitHooks.set(child, onExit);
  const url = `http://127.0.0.1:${port}`;
  const node: BenchNode = {
    url, pid: child.pid!, nodeId, child,
    output: () => out,
    alive: () => child.exitCode === null && child.signalCode === null,
  };
  spawned(node);
  const name = nodeId ? `node ${nodeId}` : "the server";
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited during start-up:\n${out}`);
    const ok = await fetch(`${url}/api/health`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`${name} did not answer /api/health within 60 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return node;
}

async function stopNode(node: BenchNode) {
  const { child } = node;
  const onExit = exitHooks.get(child);
  if (onExit) process.off("exit", onExit);
  exitHooks.delete(child);
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Deletes every key of a run's cluster (presence, leader locks, rate budgets) from the shared Redis. */
async function deleteRedisKeys(url: string, prefix: string) {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
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

/** The bare-transport ceiling server (bench/lib/ceilingServer.ts) as a process of its own. */
export async function startCeilingServer(): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "bench/lib/ceilingServer.ts")], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  const onExit = () => child.kill("SIGKILL");
  process.once("exit", onExit);
  let out = "";
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the ceiling server did not start within 30 s:\n${out}`)), 30_000);
    const seen = (d: string) => {
      out += d;
      const m = /listening (\d+)/.exec(out);
      if (m) clearTimeout(timer), resolve(Number(m[1]));
    };
    child.stdout!.setEncoding("utf8").on("data", seen);
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.once("exit", (code) => { clearTimeout(timer); reject(new Error(`the ceiling server exited (${code}):\n${out}`)); });
  });
  return {
    url: `http://127.0.0.1:${port}`, pid: child.pid!,
    async stop() {
      process.off("exit", onExit);
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await gone;
    },
  };
}

/** The calc phase's open model, run by a caller process of its own (bench/lib/calcCaller.ts). */
export async function callCalcFromOwnProcess(args: { url: string; apiKey: string; perSecond: number; n: number }) {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "bench/lib/calcCaller.ts"), JSON.stringify(args)], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  const onExit = () => child.kill("SIGKILL");
  process.once("exit", onExit);
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  process.off("exit", onExit);
  if (code !== 0) throw new Error(`the calc caller exited (${code}):\n${err}`);
  return JSON.parse(out) as { requests: number; perSecond: number; failed: number; summary: Summary };
}
