import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { databaseKind, redactUrl } from "../../server/store/databaseUrl";
import { parseEnv } from "../../server/env";

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-env-"));
afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));

describe("DATABASE_URL", () => {
  it("names SQLite with file: and PostgreSQL with postgres:// or postgresql://", () => {
    expect(databaseKind("file:./data/tabgrid.db")).toBe("sqlite");
    expect(databaseKind("postgres://tabgrid@db.example:5432/tabgrid")).toBe("postgres");
    expect(databaseKind("postgresql://tabgrid@db.example/tabgrid")).toBe("postgres");
    expect(() => databaseKind("mysql://root:hunter2@db/tabgrid")).toThrow(/SQLite file: URL or a postgres:\/\/ URL/);
  });

  it("is refused at start-up when it names neither, without echoing it", () => {
    expect(() => parseEnv({ DATABASE_URL: "mysql://root:hunter2@db/tabgrid", DATA_DIR: dataDir, NEXTAUTH_SECRET: "0123456789abcdef0123" }))
      .toThrow(/DATABASE_URL: must be a SQLite file: URL/);
    expect(() => parseEnv({ DATABASE_URL: "mysql://root:hunter2@db/tabgrid", DATA_DIR: dataDir, NEXTAUTH_SECRET: "0123456789abcdef0123" })).not.toThrow(/hunter2/);
    expect(parseEnv({ DATABASE_URL: "postgres://tabgrid:secret@db/tabgrid", DATA_DIR: dataDir, NEXTAUTH_SECRET: "0123456789abcdef0123" }).DATABASE_URL).toBe("postgres://tabgrid:secret@db/tabgrid");
  });

  it("is logged without its password", () => {
    expect(redactUrl("postgres://tabgrid:s3cr%40t@db.example:5432/tabgrid")).toBe("postgres://tabgrid:***@db.example:5432/tabgrid");
    expect(redactUrl("postgresql://tabgrid@db.example/tabgrid?sslmode=require&password=s3cret")).toBe("postgresql://tabgrid@db.example/tabgrid?sslmode=require&password=***");
    expect(redactUrl("postgres://tabgrid@db.example/tabgrid")).toBe("postgres://tabgrid@db.example/tabgrid");
    expect(redactUrl("file:./data/tabgrid.db")).toBe("file:./data/tabgrid.db");
  });
});
