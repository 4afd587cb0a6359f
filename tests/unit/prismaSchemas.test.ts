import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without types
import { postgresSchema } from "../../scripts/prisma-schemas.mjs";
import { databaseKind, redactUrl } from "../../server/store/databaseUrl";

const root = path.resolve(import.meta.dirname, "../..");
const read = (p: string) => fs.readFileSync(path.join(root, p), "utf8");

describe("one model source for both providers", () => {
  it("the committed PostgreSQL schema is the one derived from prisma/schema.prisma", () => {
    expect(read("prisma/postgres/schema.prisma")).toBe((postgresSchema as (s: string) => string)(read("prisma/schema.prisma")));
  });

  it("only the provider, its placeholder URL and the client's folder differ", () => {
    const pg = (postgresSchema as (s: string) => string)(read("prisma/schema.prisma"));
    expect(pg).toContain('provider = "postgresql"');
    expect(pg).toContain('output          = "../../generated/prisma-pg"');
    const models = (s: string) => s.slice(s.indexOf("model "));
    expect(models(pg)).toBe(models(read("prisma/schema.prisma")));
  });

  it("each provider's migrations are locked to it, and PostgreSQL keeps millicredits in BIGINT", () => {
    expect(read("prisma/migrations/migration_lock.toml")).toContain('provider = "sqlite"');
    expect(read("prisma/postgres/migrations/migration_lock.toml")).toContain('provider = "postgresql"');
    const dir = path.join(root, "prisma/postgres/migrations");
    const sql = fs.readdirSync(dir).filter((d) => fs.statSync(path.join(dir, d)).isDirectory()).map((d) => read(`prisma/postgres/migrations/${d}/migration.sql`)).join("\n");
    for (const column of ["balance", "amount", "price", "estimate", "cost", "pay", "earned", "paid", "reward"]) {
      expect(sql, column).toMatch(new RegExp(`"${column}" BIGINT`));
    }
    // The PostgreSQL adapter splits a script on every semicolon, comments included.
    for (const line of sql.split("\n").filter((l) => l.trim().startsWith("--"))) expect(line).not.toContain(";");
  });
});

describe("DATABASE_URL", () => {
  it("names SQLite with file: and PostgreSQL with postgres:// or postgresql://", () => {
    expect(databaseKind("file:./data/tabgrid.db")).toBe("sqlite");
    expect(databaseKind("postgres://u@h/db")).toBe("postgres");
    expect(databaseKind("postgresql://u@h:5432/db")).toBe("postgres");
    expect(() => databaseKind("mysql://u:secret@h/db")).toThrow(/file: URL or a postgres:\/\/ URL/);
  });

  it("never shows a password in an error or a log", () => {
    expect(redactUrl("postgres://tabgrid:s3cret@db.example:5432/tabgrid")).toBe("postgres://tabgrid:***@db.example:5432/tabgrid");
    expect(() => databaseKind("mysql://u:secret@h/db")).toThrow(/^(?!.*secret)/);
  });
});
