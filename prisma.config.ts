import path from "node:path";
import { defineConfig } from "prisma/config";
import { PrismaBetterSQLite3 } from "@prisma/adapter-better-sqlite3";
import { databaseFile, databaseKind, DEFAULT_DATABASE_URL } from "./server/store/databaseUrl";
import { migrateAdapter } from "./server/store/postgres/migrateAdapter";

// DATABASE_URL picks the engine, and with it the schema and migrations folder of that
// provider (prisma/ for SQLite, prisma/postgres/ for PostgreSQL; see scripts/prisma-schemas.mjs).
// The CLI uses the WASM schema engine through the driver adapter: no native engine download.
const url = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
const dir = databaseKind(url) === "postgres" ? path.join("prisma", "postgres") : "prisma";

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  schema: path.join(dir, "schema.prisma"),
  migrations: { path: path.join(dir, "migrations"), seed: "tsx prisma/seed.ts" },
  adapter: async () => (databaseKind(url) === "postgres" ? migrateAdapter(url) : new PrismaBetterSQLite3({ url: databaseFile(url) })),
});
