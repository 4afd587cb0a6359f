import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { inject } from "vitest";
import type { Db } from "../../server/store/prisma";

// The database a test runs on. SQLite by default: a copy of the migrated template file in a
// temp directory. With TEST_DATABASE_URL=postgres://… (an account that may create
// databases), a PostgreSQL database cloned from the migrated template database
// (`CREATE DATABASE … TEMPLATE`), dropped again by `remove()`.

export interface TestDatabase {
  databaseUrl: string;
  /** A directory of the test's own (blobs, identity files; the SQLite file lives here too). */
  dir: string;
  remove(): Promise<void>;
}

/** Which engine the tests run on. */
export const testEngine = (): "sqlite" | "postgres" => (/^postgres(ql)?:\/\//.test(process.env.TEST_DATABASE_URL ?? "") ? "postgres" : "sqlite");

function template(): string {
  const t = inject("templateDb") ?? process.env.TABGRID_TEMPLATE_DB;
  if (!t) throw new Error("no template database: run through vitest with tests/globalSetup.ts");
  return t;
}

/** `url` with its database name replaced. */
export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Runs one statement as the administrator of a PostgreSQL server (TEST_DATABASE_URL's by default). */
export async function adminQuery(sql: string, url = process.env.TEST_DATABASE_URL): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export async function freshDatabase(prefix = "tabgrid-it-"): Promise<TestDatabase> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const rmDir = () => fs.rmSync(dir, { recursive: true, force: true });
  if (testEngine() === "sqlite") {
    const file = path.join(dir, "tabgrid.db");
    fs.copyFileSync(template(), file);
    return { databaseUrl: `file:${file}`, dir, remove: async () => rmDir() };
  }
  // Named after the run's template (`<run>_tpl`), so the run's teardown finds what a killed test left.
  const tpl = new URL(template()).pathname.slice(1);
  const name = `${tpl.replace(/_tpl$/, "")}_t_${crypto.randomBytes(6).toString("hex")}`;
  await adminQuery(`CREATE DATABASE "${name}" TEMPLATE "${tpl}"`);
  return {
    databaseUrl: withDatabase(process.env.TEST_DATABASE_URL!, name),
    dir,
    async remove() {
      rmDir();
      await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

const POSTGRES_ADMIN = () => process.env.TEST_DATABASE_URL && testEngine() === "postgres" ? process.env.TEST_DATABASE_URL : "postgres://postgres@127.0.0.1:5432/postgres";

/**
 * A fresh, migrated PostgreSQL database whatever engine the run is on (cluster mode needs one):
 * a clone of the run's template on a PostgreSQL run, else created and migrated here (slower).
 */
export async function freshPostgres(prefix = "tabgrid-pg-"): Promise<TestDatabase> {
  if (testEngine() === "postgres") return freshDatabase(prefix);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const name = `tabgrid_pg_${crypto.randomBytes(6).toString("hex")}`;
  const admin = POSTGRES_ADMIN();
  const run = (sql: string) => adminQuery(sql, admin);
  await run(`CREATE DATABASE "${name}"`);
  const databaseUrl = withDatabase(admin, name);
  const { execFileSync } = await import("node:child_process");
  try {
    execFileSync("npx", ["prisma", "migrate", "deploy"], { cwd: path.resolve(import.meta.dirname, "../.."), env: { ...process.env, DATABASE_URL: databaseUrl }, stdio: "pipe", timeout: 110_000 });
  } catch (e) {
    await run(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    throw e;
  }
  return {
    databaseUrl, dir,
    async remove() {
      fs.rmSync(dir, { recursive: true, force: true });
      await run(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

/**
 * Commits that do not wait for the disk, for a test about something else (a thousand commits
 * go several times faster). Call it before the client's first query: SQLite's setting is the
 * connection's, PostgreSQL's is the database's and taken by the connections opened after it.
 */
export async function skipFsync(t: TestDatabase, db: Db): Promise<void> {
  if (testEngine() === "sqlite") await db.$executeRawUnsafe("PRAGMA synchronous = OFF");
  else await adminQuery(`ALTER DATABASE "${new URL(t.databaseUrl).pathname.slice(1)}" SET synchronous_commit = off`);
}
