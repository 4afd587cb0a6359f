import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import { parseArgs } from "node:util";
import { databaseKind, redactUrl } from "../server/store/databaseUrl";
import { buildServer, serverProcessEnv } from "./build-server.mjs";

// `npm run cluster -- --nodes 3`: N coordinators of one cluster on this machine, for trying
// cluster mode (docs/scaling.md). They share the PostgreSQL of DATABASE_URL and the Redis of
// REDIS_URL, one DATA_DIR (the blobs) and one NEXTAUTH_SECRET; node i listens on base port + i.
// The database is migrated and seeded first, the pages built if needed, the server bundled (as
// `npm run serve` runs it). Ctrl-C stops them all.

const { values } = parseArgs({
  options: {
    nodes: { type: "string", default: "3" },
    "base-port": { type: "string", default: process.env.PORT ?? "3000" },
    ui: { type: "string", default: process.env.TABGRID_UI ?? "on" },
  },
});
const nodes = Number(values.nodes);
const basePort = Number(values["base-port"]);
const fail = (m: string): never => {
  console.error(`npm run cluster: ${m}`);
  process.exit(2);
};
if (!Number.isInteger(nodes) || nodes < 1 || nodes > 32) fail("--nodes is a whole number from 1 to 32");
if (!Number.isInteger(basePort) || basePort < 1 || basePort + nodes > 65535) fail("--base-port is a port number");
const databaseUrl = process.env.DATABASE_URL ?? "";
if (!databaseUrl || databaseKind(databaseUrl) !== "postgres") {
  fail("set DATABASE_URL to a PostgreSQL database every node shares, e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/tabgrid");
}
if (!process.env.REDIS_URL) fail("set REDIS_URL to the Redis the nodes share, e.g. REDIS_URL=redis://127.0.0.1:6379");

const run = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { stdio: "inherit", env: process.env });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
run("npm", ["run", "--silent", "db:migrate"]);
if (values.ui === "on") run("npm", ["run", "--silent", "build:if-changed"]);
// The nodes run the server's bundle, as `npm run serve` does, built from the sources as they are.
const bundle = await buildServer();

// One secret for every node, or a session signed by one is refused by the others.
const secret = process.env.NEXTAUTH_SECRET ?? crypto.randomBytes(32).toString("base64url");
const children: ChildProcess[] = [];
for (let i = 0; i < nodes; i++) {
  const id = `node-${i + 1}`;
  const port = basePort + i;
  const child = spawn(process.execPath, [bundle], {
    env: serverProcessEnv({ ...process.env, PORT: String(port), NODE_ID: id, NEXTAUTH_SECRET: secret, TABGRID_UI: values.ui, PUBLIC_URL: process.env.PUBLIC_URL ?? `http://localhost:${port}` }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const prefix = (d: Buffer) => process.stdout.write(d.toString().replace(/^(?=.)/gm, `[${id}] `));
  child.stdout!.on("data", prefix);
  child.stderr!.on("data", prefix);
  child.on("exit", (code, signal) => console.log(`[${id}] exited (${signal ?? code})`));
  children.push(child);
}
console.log(`${nodes} node(s) on ${redactUrl(databaseUrl)} and ${redactUrl(process.env.REDIS_URL!)}: ` +
  Array.from({ length: nodes }, (_, i) => `http://localhost:${basePort + i}`).join(", ") +
  `\nVolunteers may use any of them: tabgrid volunteer --url ${Array.from({ length: nodes }, (_, i) => `http://localhost:${basePort + i}`).join(",")}`);

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1);
    stopping = true;
    for (const c of children) c.kill("SIGTERM");
    void Promise.all(children.map((c) => (c.exitCode !== null ? null : new Promise((r) => c.once("exit", r))))).then(() => process.exit(0));
  });
}
