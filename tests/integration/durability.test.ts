import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hotStore } from "../../server/store/hotStore";
import type { SqliteHotStore } from "../../server/store/sqliteHotStore";
import { createPrisma, pgPool, sqliteGate } from "../../server/store/prisma";
import { startTestServer, type TestServer } from "../helpers/server";
import { testEngine } from "../helpers/testDb";

// docs/performance.md: an acknowledged result is committed with synchronous=FULL, so it
// survives an OS crash or a power loss, not only a crash of the server process. SQLite's
// `synchronous` is per connection, so every connection that writes is checked, read from
// inside the running server: Prisma's (jobs, accounts, ledger transactions) and the database
// writer thread's (the group commit of results, validations and payouts). On PostgreSQL the
// same promise is a commit that waits for its WAL to be flushed (synchronous_commit) to a
// server that flushes at all (fsync): both can be turned off per server, database, role or
// session, so they are read through the running server's own connections.

const FULL = 2;
const NORMAL = 1;

let srv: TestServer;

beforeAll(async () => {
  srv = await startTestServer({ NODE_ENV: "production" });
});

afterAll(async () => {
  await srv?.close();
});

/** The server's own writer thread (the coordinator starts it in recover()). */
function writerOf(s: TestServer): SqliteHotStore {
  return hotStore(s.deps.db) as SqliteHotStore;
}

describe.skipIf(testEngine() === "postgres")("every SQLite connection that writes commits with synchronous=FULL", () => {
  it("the build's default would be NORMAL on a WAL database (so the setting must be explicit)", async () => {
    const file = (await sqliteGate(srv.deps.db)).file;
    const plain = new Database(file, { readonly: true });
    try {
      expect(plain.pragma("journal_mode", { simple: true })).toBe("wal");
      expect(plain.pragma("synchronous", { simple: true })).toBe(NORMAL);
    } finally {
      plain.close();
    }
  });

  it("Prisma's connection in the running server", async () => {
    const gate = await sqliteGate(srv.deps.db);
    expect(gate.read((c) => c.pragma("journal_mode", { simple: true }))).toBe("wal");
    // Prisma's connection returns integers as BigInts.
    expect(Number(gate.read((c) => c.pragma("synchronous", { simple: true })))).toBe(FULL);
    // The same connection, through the query engine.
    const rows = await srv.deps.db.$queryRawUnsafe<Array<{ synchronous: bigint | number }>>("PRAGMA synchronous");
    expect(Number(rows[0].synchronous)).toBe(FULL);
  });

  it("the database writer thread of the running server", async () => {
    const writer = await writerOf(srv);
    await writer.ready();
    expect(await writer.setting("journal_mode")).toBe("wal");
    expect(await writer.setting("synchronous")).toBe(FULL);
    await expect(writer.setting("synchronous = OFF")).rejects.toThrow(/not a setting name/);
    expect(await writer.setting("synchronous")).toBe(FULL);
  });

  it("a client made by createPrisma elsewhere (seed, `tabgrid admin`, bench) too", async () => {
    const db = createPrisma(srv.databaseUrl);
    try {
      await db.user.count();
      expect(Number((await sqliteGate(db)).read((c) => c.pragma("synchronous", { simple: true })))).toBe(FULL);
    } finally {
      await db.$disconnect();
    }
  });
});

describe.skipIf(testEngine() === "sqlite")("every PostgreSQL commit waits for the disk", () => {
  const settings = async (query: (sql: string) => Promise<Array<Record<string, string>>>) => ({
    synchronous_commit: (await query("SHOW synchronous_commit"))[0].synchronous_commit,
    fsync: (await query("SHOW fsync"))[0].fsync,
  });

  it("on the pool the running server's Prisma client and group commit share", async () => {
    const pool = pgPool(srv.deps.db);
    // Several connections at once, so that more than one of the pool's is asked.
    const seen = await Promise.all([1, 2, 3].map(() => settings(async (sql) => (await pool.query<Record<string, string>>(sql)).rows)));
    for (const s of seen) expect(s).toEqual({ synchronous_commit: "on", fsync: "on" });
    // The same pool, through the query engine.
    expect(await settings((sql) => srv.deps.db.$queryRawUnsafe(sql))).toEqual({ synchronous_commit: "on", fsync: "on" });
  });

  it("a client made by createPrisma elsewhere (seed, `tabgrid admin`, bench) too", async () => {
    const db = createPrisma(srv.databaseUrl);
    try {
      expect(await settings((sql) => db.$queryRawUnsafe(sql))).toEqual({ synchronous_commit: "on", fsync: "on" });
    } finally {
      await db.$disconnect();
    }
  });
});
