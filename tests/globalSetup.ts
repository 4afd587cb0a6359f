import { execFile } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /**
     * A migrated, empty database each test copies instead of migrating: a SQLite file, or with
     * TEST_DATABASE_URL=postgres://… the URL of a PostgreSQL template database.
     */
    templateDb: string;
  }
}

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, "..");

async function migrate(databaseUrl: string) {
  try {
    await run("npx", ["prisma", "migrate", "deploy"], { cwd: repoRoot, env: { ...process.env, DATABASE_URL: databaseUrl }, timeout: 110_000 });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`prisma migrate deploy failed: ${err.message}\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
  }
}

async function admin(sql: string) {
  const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Migrates one template database for the whole run (about a second), removed at teardown. */
export default async function setup(project: TestProject) {
  const admins = process.env.TEST_DATABASE_URL;
  let template: string;
  let teardown: () => Promise<void> | void;
  if (admins && /^postgres(ql)?:\/\//.test(admins)) {
    // One run's databases share a prefix, so teardown drops whatever a killed test left behind.
    const run = `tabgrid_${crypto.randomBytes(4).toString("hex")}`;
    const u = new URL(admins);
    u.pathname = `/${run}_tpl`;
    template = u.toString();
    await admin(`CREATE DATABASE "${run}_tpl"`);
    try {
      await migrate(template);
    } catch (e) {
      await admin(`DROP DATABASE IF EXISTS "${run}_tpl" WITH (FORCE)`);
      throw e;
    }
    teardown = async () => {
      const { rows } = await admin(`SELECT datname FROM pg_database WHERE starts_with(datname, '${run}_')`);
      for (const r of rows as Array<{ datname: string }>) await admin(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`);
    };
  } else {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-template-"));
    const file = path.join(dir, "template.db");
    try {
      await migrate(`file:${file}`);
    } catch (e) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    if (!fs.existsSync(file)) throw new Error(`prisma migrate deploy did not create ${file}`);
    template = file;
    teardown = () => fs.rmSync(dir, { recursive: true, force: true });
  }
  project.provide("templateDb", template);
  // Also in the environment, for code that runs outside a test file's context.
  process.env.TABGRID_TEMPLATE_DB = template;
  return teardown;
}
