import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** A migrated, empty SQLite database; each test server copies it instead of migrating. */
    templateDb: string;
  }
}

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, "..");

/** Migrates one template database for the whole run (about a second), removed at teardown. */
export default async function setup(project: TestProject) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-template-"));
  const file = path.join(dir, "template.db");
  try {
    await run("npx", ["prisma", "migrate", "deploy"], {
      cwd: repoRoot,
      env: { ...process.env, DATABASE_URL: `file:${file}` },
      timeout: 110_000,
    });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`prisma migrate deploy failed: ${err.message}\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
  }
  if (!fs.existsSync(file)) throw new Error(`prisma migrate deploy did not create ${file}`);
  project.provide("templateDb", file);
  // Also in the environment, for code that runs outside a test file's context.
  process.env.TABGRID_TEMPLATE_DB = file;
  return () => fs.rmSync(dir, { recursive: true, force: true });
}
