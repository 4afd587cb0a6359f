import { PrismaBetterSQLite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaClient } from "../../generated/prisma/client";
import { databaseFile } from "./databaseUrl";

export type Db = PrismaClient;

export function createPrisma(url?: string): Db {
  return new PrismaClient({ adapter: new PrismaBetterSQLite3({ url: databaseFile(url) }) });
}

const cache = globalThis as unknown as { tabgridPrisma?: Db };

/** The process-wide client (kept on globalThis so dev reloads don't open more files). */
export function prisma(): Db {
  cache.tabgridPrisma ??= createPrisma();
  return cache.tabgridPrisma;
}
