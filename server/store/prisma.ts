import { PrismaBetterSQLite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaClient } from "../../generated/prisma/client";
import { databaseFile } from "./databaseUrl";
import { gateAdapter, SqliteGate } from "./sqliteGate";

export type Db = PrismaClient;

const gates = new WeakMap<Db, SqliteGate>();

export function createPrisma(url?: string): Db {
  const gate = new SqliteGate();
  const db = new PrismaClient({ adapter: gateAdapter(new PrismaBetterSQLite3({ url: databaseFile(url) }), gate) });
  gates.set(db, gate);
  return db;
}

/** Synchronous batch writes on the client's own connection (see sqliteGate.ts); connects first if needed. */
export async function sqliteGate(db: Db): Promise<SqliteGate> {
  const gate = gates.get(db);
  if (!gate) throw new Error("this Prisma client was not made by createPrisma");
  if (!gate.attached) await db.$connect();
  return gate;
}

const cache = globalThis as unknown as { tabgridPrisma?: Db };

/** The process-wide client (kept on globalThis so dev reloads don't open more files). */
export function prisma(): Db {
  cache.tabgridPrisma ??= createPrisma();
  return cache.tabgridPrisma;
}
