import type pg from "pg";
import { PrismaBetterSQLite3 } from "@prisma/adapter-better-sqlite3";
import { createRequire } from "node:module";
import { PrismaClient } from "../../generated/prisma/client";
import { PrismaClient as PgPrismaClient } from "../../generated/prisma-pg/client";
import { databaseFile, databaseKind, DEFAULT_DATABASE_URL, type DatabaseKind } from "./databaseUrl";
import { gateAdapter, SqliteGate } from "./sqliteGate";
import { createPool } from "./postgres/pool";

/**
 * The Prisma client. Both providers' clients are generated from one model source
 * (scripts/prisma-schemas.mjs), so they have the same models and queries; the SQLite one's
 * type stands for both.
 */
export type Db = PrismaClient;

interface Engine {
  kind: DatabaseKind;
  gate?: SqliteGate;
  pool?: pg.Pool;
}

const engines = new WeakMap<Db, Engine>();

export function createPrisma(url = process.env.DATABASE_URL || DEFAULT_DATABASE_URL): Db {
  if (databaseKind(url) === "postgres") {
    const pool = createPool(url);
    // One pool for Prisma and the raw hot path; Prisma's $disconnect ends it.
    // Loaded here, not with the server: a server on SQLite never needs the PostgreSQL adapter.
    const { PrismaPg } = createRequire(import.meta.url)("@prisma/adapter-pg") as typeof import("@prisma/adapter-pg");
    const db = new PgPrismaClient({ adapter: new PrismaPg(pool, { disposeExternalPool: true }) }) as unknown as Db;
    engines.set(db, { kind: "postgres", pool });
    return db;
  }
  const gate = new SqliteGate();
  const db = new PrismaClient({ adapter: gateAdapter(new PrismaBetterSQLite3({ url: databaseFile(url) }), gate) });
  engines.set(db, { kind: "sqlite", gate });
  return db;
}

function engineOf(db: Db): Engine {
  const e = engines.get(db);
  if (!e) throw new Error("this Prisma client was not made by createPrisma");
  return e;
}

/** Which engine this client talks to. */
export function dbKind(db: Db): DatabaseKind {
  return engineOf(db).kind;
}

/**
 * A `contains` filter that ignores case on both engines. SQLite's LIKE already does (for
 * ASCII); PostgreSQL's needs `mode: "insensitive"` (ILIKE), which exists only in the
 * PostgreSQL client's types, hence the cast to the shared (SQLite) filter type.
 */
export function containsAnyCase(db: Db, text: string): { contains: string } {
  return dbKind(db) === "postgres" ? ({ contains: text, mode: "insensitive" } as { contains: string }) : { contains: text };
}

/** Synchronous batch writes on the client's own connection (see sqliteGate.ts); connects first if needed. */
export async function sqliteGate(db: Db): Promise<SqliteGate> {
  const gate = engineOf(db).gate;
  if (!gate) throw new Error("this is not a SQLite database");
  if (!gate.attached) await db.$connect();
  return gate;
}

/** The PostgreSQL pool Prisma uses, for the hot path's raw SQL. */
export function pgPool(db: Db): pg.Pool {
  const pool = engineOf(db).pool;
  if (!pool) throw new Error("this is not a PostgreSQL database");
  return pool;
}

const cache = globalThis as unknown as { tabgridPrisma?: Db };

/** The process-wide client (kept on globalThis so dev reloads don't open more files). */
export function prisma(): Db {
  cache.tabgridPrisma ??= createPrisma();
  return cache.tabgridPrisma;
}
