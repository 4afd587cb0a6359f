import crypto from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { anonAccount, escrowAccount, SYSTEM_GRANTS, userAccount } from "../../server/services/credits/accounts";
import { auditLedger, postTransaction } from "../../server/services/credits/ledger";
import type { PersistOp } from "../../server/services/jobs/batchSql";
import { hotStore } from "../../server/store/hotStore";
import { createPrisma, type Db } from "../../server/store/prisma";
import { postgresDatabase, postgresUnavailable, releaseEngines } from "../helpers/engines";
import type { TestDatabase } from "../helpers/testDb";
import { waitFor } from "../helpers/server";

// The common batch on PostgreSQL (store/postgres/fastBatchPg.ts) plans its payouts without a
// lock and takes the shared rows last. Here another transaction changes those rows under it
// (drains the escrow, ends the job) and holds them until the batch waits on them: the batch
// must see it, write nothing of its plan, and be written by the locked path instead.

const pgMissing = await postgresUnavailable();
const PAY = 100;
const sha256 = (s: string) => crypto.createHash("sha256").update(s).digest("hex");

describe.skipIf(!!pgMissing)("the PostgreSQL fast batch meets another writer", () => {
  let target: TestDatabase;
  let db: Db;
  let other: pg.Client;

  beforeAll(async () => {
    target = (await postgresDatabase())!;
    db = createPrisma(target.databaseUrl);
    other = new pg.Client({ connectionString: target.databaseUrl });
    await other.connect();
  });

  afterAll(async () => {
    await other?.end();
    await db?.$disconnect();
    await target?.remove();
    await releaseEngines();
  });

  /** A running job of two units, R=1, its escrow holding `escrow`; its two results decided in one batch. */
  async function setUp(name: string, escrow: number) {
    const owner = `${name}-owner`;
    await db.user.create({ data: { id: owner, email: `${owner}@example.test`, passwordHash: "x" } });
    await db.$transaction((tx) => postTransaction(tx, "grant", [{ accountId: SYSTEM_GRANTS, amount: -10_000 }, { accountId: userAccount(owner), amount: 10_000 }]));
    const jobId = `${name}-job`;
    await hotStore(db).write([{
      type: "submit",
      job: {
        id: jobId, ownerId: owner, kernel: "sum", params: "{}", chunks: 2, price: 1000, estimate: escrow, leaseMs: 30_000, replicas: 1, quorum: 1, maxReplicas: 1,
        adaptive: 0, tolerance: null, programHash: null, inputMode: null, merge: null, timeLimitMs: null,
      },
      units: [0, 1].map((idx) => [`${jobId}.${idx}`, idx, "{}", 1000, PAY] as [string, number, string, number, number]),
      round: 0, roundState: null, ownerAccount: userAccount(owner), escrow: escrowAccount(jobId), estimate: escrow,
    }]);
    const host = `${name}-host`;
    const ops: PersistOp[] = [{ type: "volunteer", id: host, tokenHash: sha256(host), userId: null, name: null, benchmark: 1, at: new Date().toISOString() }];
    for (const idx of [0, 1]) {
      const unitId = `${jobId}.${idx}`;
      const taskId = `${unitId}~t`;
      ops.push(
        { type: "result", taskId, jobId, unitId, host, account: anonAccount(host), outputJson: "1", digest: sha256("1"), turnaroundMs: 10 },
        { type: "validated", jobId, unitId, canonicalJson: "1", valid: [{ taskId, host, account: anonAccount(host), pay: PAY }], invalid: [] },
      );
    }
    return { jobId, owner, host, ops };
  }

  /** Runs `change` in another transaction, writes `ops` meanwhile, and commits `change` once the batch waits on its rows. */
  async function writeUnder(change: string[], ops: PersistOp[]) {
    await other.query("BEGIN");
    for (const sql of change) await other.query(sql);
    const write = hotStore(db).write(ops);
    await waitFor(async () => {
      const { rows } = await other.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
      return rows[0].n > 0;
    }, 10_000, "the batch waiting on the other transaction's rows");
    await other.query("COMMIT");
    await write;
  }

  it("an escrow drained meanwhile: nothing is paid beyond it and nothing overdraws it", async () => {
    const { jobId, owner, host, ops } = await setUp("drained", 2 * PAY);
    // Another node's payout takes all but one result's pay out of the escrow.
    await writeUnder([
      `UPDATE "Account" SET "balance" = "balance" - ${PAY + 40} WHERE "id" = '${escrowAccount(jobId)}'`,
      `UPDATE "Account" SET "balance" = "balance" + ${PAY + 40} WHERE "id" = '${userAccount(owner)}'`,
    ], ops);
    expect((await db.account.findUniqueOrThrow({ where: { id: escrowAccount(jobId) } })).balance).toBe(0);
    const results = await db.result.findMany({ where: { jobId }, orderBy: { unitId: "asc" }, select: { state: true, paid: true } });
    // What was left (60) goes to the first unit in order, nothing to the second: as the locked path plans it.
    expect(results).toEqual([{ state: "valid", paid: PAY - 40 }, { state: "valid", paid: 0 }]);
    expect((await db.account.findUniqueOrThrow({ where: { id: anonAccount(host) } })).balance).toBe(PAY - 40);
    expect(await db.job.findUniqueOrThrow({ where: { id: jobId }, select: { unitsDone: true, cost: true } })).toEqual({ unitsDone: 2, cost: PAY - 40 });
  });

  it("a job ended meanwhile: its units stay undecided, its results unpaid, its refund whole", async () => {
    const { jobId, owner, host, ops } = await setUp("ended", 2 * PAY);
    // Another node cancels the job and refunds its escrow.
    await writeUnder([
      `UPDATE "Job" SET "state" = 'cancelled', "finishedAt" = now() WHERE "id" = '${jobId}'`,
      `UPDATE "Account" SET "balance" = "balance" - ${2 * PAY} WHERE "id" = '${escrowAccount(jobId)}'`,
      `UPDATE "Account" SET "balance" = "balance" + ${2 * PAY} WHERE "id" = '${userAccount(owner)}'`,
    ], ops);
    expect(await db.workUnit.count({ where: { jobId, done: true } })).toBe(0);
    expect(await db.result.findMany({ where: { jobId }, select: { state: true, paid: true } })).toEqual([{ state: "pending", paid: 0 }, { state: "pending", paid: 0 }]);
    expect(await db.account.findUnique({ where: { id: anonAccount(host) } })).toBeNull();
    expect(await db.job.findUniqueOrThrow({ where: { id: jobId }, select: { state: true, unitsDone: true, cost: true } })).toEqual({ state: "cancelled", unitsDone: 0, cost: 0 });
  });

  it("leaves books that balance", async () => {
    // The direct UPDATEs above moved credits without ledger entries: only the batch's own are audited here.
    const payouts = await db.ledgerEntry.groupBy({ by: ["txId"], where: { kind: "payout" }, _sum: { amount: true } });
    expect(payouts.length).toBe(1);
    expect(payouts.every((t) => t._sum.amount === 0)).toBe(true);
    expect((await auditLedger(db)).unbalancedTx).toEqual([]);
  });
});
