import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { claimSlices, insertSlices, slicesOf } from "../../server/cluster/slices";
import { writeBatchFastPg } from "../../server/store/postgres/fastBatchPg";
import { writeBatchPg } from "../../server/store/postgres/batchPg";
import { fenceOps } from "../../server/store/postgres/fencePg";
import type { PersistOp } from "../../server/services/jobs/batchSql";
import { freshPostgres, type TestDatabase } from "../helpers/testDb";

// What a node gets when it claims slices (server/cluster/slices.ts), straight on PostgreSQL:
// oldest jobs first, jobs another node computes last, never a slice that is done, held or of
// a job that no longer runs, and two nodes claiming at once never get the same slice. And
// what a node writes into a slice once another node has claimed it is fenced out.
describe("claiming slices", () => {
  let t: TestDatabase;
  let pool: pg.Pool;
  const q = (sql: string, values: unknown[] = []) => pool.query(sql, values);

  async function job(id: string, ageSeconds: number, units: number, state = "running") {
    await q(`INSERT INTO "Job" ("id", "ownerId", "kernel", "params", "chunks", "price", "estimate", "leaseMs", "state", "createdAt")
      VALUES ($1, 'owner', 'pi', '{}', $2, 1, 1, 1000, $3, now() - $4 * interval '1 second')`, [id, units, state, ageSeconds]);
    const c = await pool.connect();
    try {
      await insertSlices(c, slicesOf(id, 0, units));
    } finally {
      c.release();
    }
  }
  const holdBy = (node: string, id: string, seconds = 60) =>
    q(`UPDATE "Slice" SET "owner" = $1, "leaseUntil" = (now() AT TIME ZONE 'UTC') + $3 * interval '1 second' WHERE "id" = $2`, [node, id, seconds]);
  const ids = (rows: Array<{ id: string }>) => rows.map((r) => r.id);

  beforeAll(async () => {
    t = await freshPostgres();
    pool = new pg.Pool({ connectionString: t.databaseUrl, max: 4 });
    // The database is dropped at the end (its backends terminated): a connection still closing then must not fail the run.
    pool.on("error", () => undefined);
    await q(`INSERT INTO "User" ("id", "email", "passwordHash", "createdAt") VALUES ('owner', 'owner@example.com', 'x', now())`);
  }, 120_000);
  beforeEach(async () => {
    await q(`DELETE FROM "Slice"`);
    await q(`DELETE FROM "Result"`);
    await q(`DELETE FROM "Job"`);
  });
  afterAll(async () => {
    await pool?.end();
    await t?.remove();
  });

  it("takes the oldest job's slices in order, then the next job's, and leaves jobs another node computes for last", async () => {
    await job("old", 30, 600); // slices old:0:0, old:0:256, old:0:512
    await job("mid", 20, 300);
    await job("new", 10, 256);
    expect(ids(await claimSlices(pool, "node-1", 2, 60_000))).toEqual(["old:0:0", "old:0:256"]);
    // The rest of "old", then "mid": a claim spans jobs when the first has too few left.
    expect(ids(await claimSlices(pool, "node-1", 2, 60_000))).toEqual(["old:0:512", "mid:0:0"]);
    // node-2 holds "mid"'s first slice: it claims "new" before the rest of "mid".
    expect(ids(await claimSlices(pool, "node-2", 2, 60_000))).toEqual(["new:0:0", "mid:0:256"]);
    expect(await claimSlices(pool, "node-1", 4, 60_000)).toEqual([]);
  });

  it("skips done and held slices and jobs that no longer run, and takes back a slice whose lease ran out", async () => {
    await job("ended", 40, 256, "completed");
    await job("a", 30, 768);
    await q(`UPDATE "Slice" SET "done" = true WHERE "id" = 'a:0:0'`);
    await holdBy("node-2", "a:0:256");
    await holdBy("node-3", "a:0:512", -1); // its node stopped renewing a second ago
    const rows = await claimSlices(pool, "node-1", 8, 60_000);
    expect(ids(rows)).toEqual(["a:0:512"]);
    expect(rows[0]).toMatchObject({ jobId: "a", round: 0, first: 512, last: 768, epoch: 1 });
    const { rows: [held] } = await q(`SELECT "owner", "leaseUntil" > (now() AT TIME ZONE 'UTC') AS "live" FROM "Slice" WHERE "id" = 'a:0:512'`);
    expect(held).toEqual({ owner: "node-1", live: true });
  });

  it("writes a node's results into a slice only while the node holds it at the epoch it claimed", async () => {
    await job("f", 30, 256);
    const [mine] = await claimSlices(pool, "node-1", 1, 60_000);
    expect(mine.epoch).toBe(1);
    const result = (taskId: string, epoch: number, node: string): PersistOp => ({
      type: "result", taskId, jobId: "f", unitId: "f-u0", host: "h", account: "a", outputJson: "1", digest: "d", turnaroundMs: 1, slice: { id: mine.id, epoch, node },
    });
    await writeBatchFastPg(pool, [result("t1", 1, "node-1")]);
    // node-1 stalls past its lease; node-2 claims the slice (epoch 2) and rebuilds it from the rows.
    await holdBy("node-1", mine.id, -1);
    expect(await claimSlices(pool, "node-2", 1, 60_000)).toMatchObject([{ id: mine.id, epoch: 2 }]);
    // node-1 thaws and writes what it had: fenced out, on either path. node-2's result is written.
    await writeBatchFastPg(pool, [result("t2", 1, "node-1"), result("t3", 2, "node-2")]);
    await pool.connect().then(async (c) => {
      try {
        await c.query("BEGIN");
        await writeBatchPg(c, [result("t4", 1, "node-1"), result("t5", 2, "node-1"), { type: "error", taskId: "t6", jobId: "f", unitId: "f-u0", host: "h", account: "a", error: "x", slice: { id: mine.id, epoch: 1, node: "node-1" } }]);
        await c.query("COMMIT");
      } finally {
        c.release();
      }
    });
    const { rows } = await q(`SELECT "id" FROM "Result" WHERE "jobId" = 'f' ORDER BY "id"`);
    expect(ids(rows)).toEqual(["t1", "t3"]);
  });

  it("lets no claim take a slice while a batch writes into it", async () => {
    await job("g", 30, 256);
    const [mine] = await claimSlices(pool, "node-1", 1, 60_000);
    await holdBy("node-1", mine.id, -1); // its lease ran out while node-1's batch was on its way
    const c = await pool.connect();
    try {
      await c.query("BEGIN");
      const fenced = await fenceOps(c, [{ type: "validated", jobId: "g", unitId: "g-u0", canonicalJson: "1", valid: [], invalid: [], slice: { id: mine.id, epoch: 1, node: "node-1" } }]);
      expect(fenced.dropped).toBe(0);
      // Until that batch commits, another node passes over the slice instead of rebuilding it without the batch's rows.
      expect(await claimSlices(pool, "node-2", 1, 60_000)).toEqual([]);
      await c.query("COMMIT");
    } finally {
      c.release();
    }
    expect(await claimSlices(pool, "node-2", 1, 60_000)).toMatchObject([{ id: mine.id, epoch: 2 }]);
  });

  it("gives two nodes claiming at once different slices", async () => {
    await job("big", 30, 256 * 40);
    const claims = await Promise.all(Array.from({ length: 8 }, (_, i) => claimSlices(pool, `node-${i}`, 4, 60_000)));
    const all = claims.flatMap(ids);
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBeGreaterThan(0);
    const { rows } = await q(`SELECT count(*)::int AS n FROM "Slice" WHERE "owner" IS NOT NULL`);
    expect(rows[0].n).toBe(all.length);
  });
});
