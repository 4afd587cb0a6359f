import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../../server/store/postgres/pool";
import { freshPostgres, type TestDatabase } from "../helpers/testDb";

// The PostgreSQL pool (server/store/postgres/pool.ts): a transaction left idle past the slice
// lease is ended by PostgreSQL, so a frozen node cannot hold its locks for ever; the process
// that left it must hear of it without dying, and go on with a fresh connection.
describe("the PostgreSQL pool", () => {
  let t: TestDatabase;
  const saved = process.env.SLICE_LEASE_SECONDS;

  beforeAll(async () => {
    t = await freshPostgres();
  }, 120_000);
  afterAll(async () => {
    if (saved === undefined) delete process.env.SLICE_LEASE_SECONDS;
    else process.env.SLICE_LEASE_SECONDS = saved;
    await t?.remove();
  });

  it("ends a transaction left idle past the lease, releases its locks, and goes on", async () => {
    process.env.SLICE_LEASE_SECONDS = "1";
    const pool = createPool(t.databaseUrl, 2);
    try {
      await pool.query(`CREATE TABLE "held" ("id" int PRIMARY KEY)`);
      await pool.query(`INSERT INTO "held" VALUES (1)`);
      const frozen = await pool.connect();
      await frozen.query("BEGIN");
      await frozen.query(`SELECT 1 FROM "held" WHERE "id" = 1 FOR UPDATE`);
      // Frozen between two statements for longer than the lease: the row's lock goes with the session.
      await new Promise((r) => setTimeout(r, 2000));
      const other = await pool.connect();
      try {
        await other.query("SET lock_timeout = 1000");
        expect((await other.query(`SELECT 1 FROM "held" WHERE "id" = 1 FOR UPDATE NOWAIT`)).rowCount).toBe(1);
      } finally {
        other.release();
      }
      // The frozen one's next statement fails (it is not silently outside a transaction) and the pool drops it.
      await expect(frozen.query(`UPDATE "held" SET "id" = 2`)).rejects.toThrow();
      frozen.release(true);
      expect((await pool.query(`SELECT count(*)::int AS n FROM "held" WHERE "id" = 1`)).rows[0].n).toBe(1);
    } finally {
      await pool.end();
    }
  });
});
