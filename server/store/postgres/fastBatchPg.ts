import crypto from "node:crypto";
import type pg from "pg";
import { prepared } from "./prepared";
import { accountKind, escrowAccount } from "../../services/credits/accounts";
import { balancedMoves } from "../../services/credits/ledger";
import type { PersistOp } from "../../services/jobs/batchSql";
import { planSettlement, type SettlementPlan } from "../../services/jobs/settlement";
import { addVolunteerCounts, cmp, collect, fencedOps, pgTime, upsertReliability, upsertResults, upsertVolunteers, writeVerdicts } from "./batchPg";

// The common batch (results, verdicts, payouts, reliability, hellos), with the rows other
// nodes write too (the jobs' counters, the escrows, the paid accounts) taken only by the last
// statements before COMMIT. Several nodes paying out of one job then hold its row for three
// statements and a commit each, not for a dozen statements to a busy event loop.
//
// Nothing is locked while the plan is made, so its two premises are checked where the rows
// are written: each job still runs (its counters' UPDATE finds it running) and no escrow goes
// below zero (the accounts' upsert leaves a row that would alone). If either fails, another
// node ended a job or drained an escrow meanwhile: the batch is rolled back and written by
// batchPg.ts, which locks the jobs and escrows first and settles what is left.

type Client = pg.PoolClient;

/** Batches with job endings, new jobs, backtracks or stepped rounds go to batchPg.ts directly. */
export function fastPathFits(ops: PersistOp[]): boolean {
  for (const op of ops) if (op.type === "finish" || op.type === "submit" || op.type === "backtrack" || op.type === "round") return false;
  return true;
}

/** Writes and commits the batch; false (nothing written) when it must be written under locks instead. */
export async function writeBatchFastPg(pool: pg.Pool, batch: PersistOp[]): Promise<boolean> {
  const at = pgTime(new Date());
  const c = await pool.connect();
  let open = false;
  try {
    await c.query("BEGIN");
    open = true;
    const ops = await fencedOps(c, batch);
    const { results, validated, reliability, volunteers } = collect(ops, at);
    // The Volunteer rows this batch greets or pays, in id order before anything else: taken in
    // two statements over different sets (hellos now, counters later) they could cross another
    // batch's. (A volunteer greeted for the first time has no row to lock yet: its INSERT only
    // meets another batch greeting the same new volunteer.)
    const greetedOrPaid = new Set(volunteers.keys());
    for (const op of validated) for (const r of op.valid) greetedOrPaid.add(r.host);
    if (greetedOrPaid.size) await c.query(prepared(`SELECT 1 FROM "Volunteer" WHERE "id" = ANY($1::text[]) ORDER BY "id" FOR UPDATE`, [[...greetedOrPaid].sort(cmp)]));
    if (volunteers.size) await upsertVolunteers(c, [...volunteers.values()].sort((a, b) => cmp(a.id, b.id)));
    let plan: SettlementPlan | undefined;
    if (validated.length) {
      const byUnit = [...validated].sort((a, b) => cmp(a.unitId, b.unitId));
      const jobIds = [...new Set(byUnit.map((op) => op.jobId))].sort(cmp);
      // Units of running jobs, and the escrows' balances, read without locking the jobs' rows.
      const done = await c.query<{ id: string }>(prepared(`UPDATE "WorkUnit" AS u SET "done" = true, "output" = v.output, "volunteerId" = v.host, "completedAt" = $4
        FROM unnest($1::text[], $2::text[], $3::text[]) AS v(id, output, host)
        WHERE u."id" = v.id AND NOT u."done" AND u."jobId" IN (SELECT "id" FROM "Job" WHERE "id" = ANY($5::text[]) AND "state" = 'running')
        RETURNING u."id"`, [byUnit.map((op) => op.unitId), byUnit.map((op) => op.canonicalJson), byUnit.map((op) => op.valid[0]?.host ?? null), at, jobIds]));
      const balances = await c.query<{ id: string; balance: number }>(prepared(`SELECT "id", "balance" FROM "Account" WHERE "id" = ANY($1::text[])`, [jobIds.map(escrowAccount)]));
      const balance = new Map(balances.rows.map((r) => [r.id, r.balance]));
      // An escrow not there yet is one this path cannot debit: batchPg.ts decides.
      if (jobIds.some((j) => !balance.has(escrowAccount(j)))) return await rollback(c);
      plan = planSettlement(validated, new Set(done.rows.map((r) => r.id)), (jobId) => balance.get(escrowAccount(jobId)) ?? 0);
    }
    // The rows of this node first, then the shared ones, the jobs' before the accounts'.
    if (plan) await writeVerdicts(c, plan, results, at);
    if (results.size) await upsertResults(c, [...results.values()].sort((a, b) => cmp(a.id, b.id)));
    if (reliability.size) await upsertReliability(c, [...reliability.values()].sort((a, b) => cmp(a.id, b.id)), at);
    if (plan) {
      await addVolunteerCounts(c, plan);
      if (!(await writeShared(c, plan, at))) return await rollback(c);
    }
    await c.query("COMMIT");
    open = false;
    return true;
  } catch (e) {
    if (open) await c.query("ROLLBACK").catch(() => undefined);
    // A deadlock with another node's batch: the locked path settles it, in its one order.
    if ((e as { code?: string }).code === "40P01") return false;
    throw e;
  } finally {
    c.release();
  }

  async function rollback(client: Client): Promise<false> {
    open = false;
    await client.query("ROLLBACK");
    return false;
  }
}

/**
 * The jobs' counters, the accounts' balances and the payouts' ledger entries, in that order.
 * False (to roll back) when a job no longer runs or an escrow would go below zero.
 */
async function writeShared(c: Client, plan: SettlementPlan, at: string): Promise<boolean> {
  const jobs = [...plan.jobs].sort((a, b) => cmp(a[0], b[0]));
  const counted = jobs.length
    ? await c.query(prepared(`UPDATE "Job" AS x SET "unitsDone" = x."unitsDone" + v.units, "cost" = x."cost" + v.cost
        FROM (SELECT * FROM unnest($1::text[], $2::int4[], $3::int8[]) AS t(id, units, cost) ORDER BY id) AS v
        WHERE x."id" = v.id AND x."state" = 'running' RETURNING x."id"`,
      [jobs.map((e) => e[0]), jobs.map((e) => e[1].units), jobs.map((e) => e[1].cost)]))
    : { rowCount: 0 };
  if (counted.rowCount !== jobs.length) return false;
  const deltas = new Map<string, number>();
  const entries = { tx: [] as string[], account: [] as string[], amount: [] as number[], job: [] as string[] };
  for (const [jobId, list] of [...plan.payouts].sort((a, b) => cmp(a[0], b[0]))) {
    const total = list.reduce((s, p) => s + p.amount, 0);
    if (total <= 0) continue;
    const txId = crypto.randomUUID();
    for (const [accountId, amount] of balancedMoves("payout", [{ accountId: escrowAccount(jobId), amount: -total }, ...list])) {
      entries.tx.push(txId);
      entries.account.push(accountId);
      entries.amount.push(amount);
      entries.job.push(jobId);
      deltas.set(accountId, (deltas.get(accountId) ?? 0) + amount);
    }
  }
  const moves = [...deltas].filter(([, d]) => d !== 0).sort((a, b) => cmp(a[0], b[0]));
  // In id order (INSERT … SELECT … ORDER BY takes the rows in that order), so two batches never
  // wait on each other in a circle; a volunteer's account is created on its first payout.
  const moved = moves.length
    ? await c.query(prepared(`INSERT INTO "Account" ("id", "kind", "balance", "createdAt")
        SELECT v.id, v.kind, v.amount, $4::timestamp FROM unnest($1::text[], $2::text[], $3::int8[]) AS v(id, kind, amount) ORDER BY v.id
        ON CONFLICT ("id") DO UPDATE SET "balance" = "Account"."balance" + excluded."balance"
        WHERE "Account"."kind" = 'system' OR "Account"."balance" + excluded."balance" >= 0 RETURNING "id"`,
      [moves.map((m) => m[0]), moves.map((m) => accountKind(m[0])), moves.map((m) => m[1]), at]))
    : { rowCount: 0 };
  if (moved.rowCount !== moves.length) return false;
  if (entries.tx.length) {
    await c.query(prepared(`INSERT INTO "LedgerEntry" ("txId", "accountId", "amount", "kind", "jobId", "createdAt")
        SELECT v.tx, v.account, v.amount, 'payout', v.job, $5::timestamp FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[]) AS v(tx, account, amount, job)`,
      [entries.tx, entries.account, entries.amount, entries.job, at]));
  }
  return true;
}
