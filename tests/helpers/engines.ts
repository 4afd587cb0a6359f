import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { freshDatabase, testEngine, withDatabase, type TestDatabase } from "./testDb";

// A database of each engine in one test, whichever engine the run is on: the run's own
// (freshDatabase, cloned from the run's migrated template) and the other one cloned from a
// template migrated here, once per test file, from that provider's migration scripts (a few
// hundred milliseconds, where `prisma migrate deploy` takes seconds).
//
// PostgreSQL outside a PostgreSQL run is the local server at 127.0.0.1:5432 (trust auth).
// Unreachable, the PostgreSQL half of a test is skipped with a warning, unless
// TEST_DATABASE_URL names it: then the run is about PostgreSQL and fails loudly instead.

const repoRoot = path.resolve(import.meta.dirname, "../..");

/** The local PostgreSQL server's administrator, when the run itself is on SQLite. */
export const LOCAL_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres";

/** The migration scripts of one provider's folder, oldest first. */
function migrations(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(dir, d.name, "migration.sql")))
    .map((d) => d.name)
    .sort()
    .map((name) => fs.readFileSync(path.join(dir, name, "migration.sql"), "utf8"));
}

async function run(url: string, sql: string) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

let sqliteTemplate: Promise<string> | undefined;

/** A migrated, empty SQLite database. */
export async function sqliteDatabase(): Promise<TestDatabase> {
  if (testEngine() === "sqlite") return freshDatabase("tabgrid-engines-");
  // Migrated once per test file, copied for each database.
  const template = await (sqliteTemplate ??= (async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-engines-tpl-")), "template.db");
    const conn = new Database(file);
    try {
      for (const sql of migrations(path.join(repoRoot, "prisma", "migrations"))) conn.exec(sql);
    } finally {
      conn.close();
    }
    return file;
  })());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-engines-"));
  const file = path.join(dir, "tabgrid.db");
  fs.copyFileSync(template, file);
  return { databaseUrl: `file:${file}`, dir, remove: async () => fs.rmSync(dir, { recursive: true, force: true }) };
}

let reachable: Promise<string | undefined> | undefined;

/**
 * Why PostgreSQL cannot be used here (undefined: it can). On a PostgreSQL run it must be
 * reachable: its absence throws rather than skips.
 */
export function postgresUnavailable(): Promise<string | undefined> {
  return (reachable ??= (async () => {
    const url = testEngine() === "postgres" ? process.env.TEST_DATABASE_URL! : LOCAL_POSTGRES;
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.query("SELECT 1");
      return undefined;
    } catch (e) {
      if (testEngine() === "postgres") throw new Error(`TEST_DATABASE_URL is set but PostgreSQL does not answer: ${(e as Error).message}`);
      return `PostgreSQL at ${new URL(url).host} is unreachable (${(e as Error).message})`;
    } finally {
      await client.end().catch(() => undefined);
    }
  })());
}

/** This file's databases on the local server share a prefix, so releaseEngines() finds them all. */
const prefix = `tabgrid_engines_${crypto.randomBytes(4).toString("hex")}`;
let pgTemplate: Promise<string> | undefined;

/** A migrated, empty PostgreSQL database (dropped by `remove()`), or undefined if there is no server to make one on. */
export async function postgresDatabase(): Promise<TestDatabase | undefined> {
  if (await postgresUnavailable()) return undefined;
  if (testEngine() === "postgres") return freshDatabase("tabgrid-engines-");
  // Migrated once per test file, cloned for each database.
  const template = await (pgTemplate ??= (async () => {
    const name = `${prefix}_tpl`;
    await run(LOCAL_POSTGRES, `CREATE DATABASE "${name}"`);
    for (const sql of migrations(path.join(repoRoot, "prisma", "postgres", "migrations"))) await run(withDatabase(LOCAL_POSTGRES, name), sql);
    return name;
  })());
  const name = `${prefix}_${crypto.randomBytes(6).toString("hex")}`;
  await run(LOCAL_POSTGRES, `CREATE DATABASE "${name}" TEMPLATE "${template}"`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-engines-"));
  return {
    databaseUrl: withDatabase(LOCAL_POSTGRES, name),
    dir,
    async remove() {
      fs.rmSync(dir, { recursive: true, force: true });
      await run(LOCAL_POSTGRES, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

/** Removes the templates (and whatever a failed test left): call once in afterAll. */
export async function releaseEngines() {
  const lite = sqliteTemplate;
  sqliteTemplate = undefined;
  const file = await lite?.catch(() => undefined);
  if (file) fs.rmSync(path.dirname(file), { recursive: true, force: true });
  if (!pgTemplate) return;
  pgTemplate = undefined;
  const client = new pg.Client({ connectionString: LOCAL_POSTGRES, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, [`${prefix}_`]);
    for (const r of rows) await client.query(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`);
  } finally {
    await client.end();
  }
}
