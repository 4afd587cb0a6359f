import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrisma, type Db } from "../../server/store/prisma";
import { auditLedger } from "../../server/services/credits/ledger";
import { expectSettledJob } from "../helpers/settlement";
import { describeCluster, startClusterPair, submitPiJob, waitForJobEnd, type ClusterPair } from "../helpers/clusterProcesses";
import { waitFor } from "../helpers/server";
import { freshPostgres, type TestDatabase } from "../helpers/testDb";

// Cluster mode (docs/scaling.md): two coordinators on one PostgreSQL and one Redis, CLI
// volunteers split across them, a 2,000-unit job with two copies per unit.
// - At a tenth of the job, node B is frozen (SIGSTOP, as a paused VM or a long GC would)
//   past its slice lease, until A claims one of its slices and rebuilds it from the durable
//   rows. What B still had to write into it when it thaws (its volunteers' results, queued in
//   its sockets) is fenced out (the fence itself is shown in cluster.slices.test.ts, a node
//   claiming its own slice back in cluster.claimAhead.test.ts).
// - Two seconds after B thaws, node A is killed with SIGKILL: B takes its slices over once their lease runs out
//   and rebuilds them, and A's volunteers come back through B.
const CHUNKS = 2000;
const LEASE_SECONDS = 3;

describe("a cluster of two coordinators: one frozen past its lease, the other killed mid-job", () => {
  let pg: TestDatabase;
  let db: Db;
  let pair: ClusterPair | undefined;

  beforeAll(async () => {
    pg = await freshPostgres();
    db = createPrisma(pg.databaseUrl);
  }, 120_000);
  afterAll(async () => {
    await pair?.stop();
    await db?.$disconnect();
    await pg?.remove();
  });

  it("completes the job once: every unit done once, paid within its quorum, the books balanced, taken over from within the lease plus 5 s", { timeout: 330_000 }, async () => {
    pair = await startClusterPair(pg, db, LEASE_SECONDS);
    const { a, b, apiKey, volunteers } = pair;
    const health = await (await fetch(`${a.url}/api/health`)).json();
    expect(health).toMatchObject({ node: "node-a", mode: "cluster", databaseEngine: "postgres", redis: "ok" });
    const id = await submitPiJob(a.url, apiKey, CHUNKS);
    const unitsDone = async () => (await db.job.findUniqueOrThrow({ where: { id } })).unitsDone;

    // Both nodes compute: each holds slices of the job.
    // (Unclaimed slices have no owner: counted among the owners, they made this pass without B,
    // and time out when both nodes held slices beside an unclaimed one.)
    await waitFor(async () => {
      const owners = new Set((await db.slice.findMany({ where: { jobId: id, done: false }, select: { owner: true } })).map((o) => o.owner));
      return owners.has("node-a") && owners.has("node-b");
    }, 60_000, "both nodes to hold slices", 50).catch(async (e: Error) => {
      throw new Error(`${e.message}\n${await describeCluster(db, id, [a, b])}`);
    });

    await waitFor(async () => (await unitsDone()) >= CHUNKS / 10, 60_000, "a tenth of the units", 20);
    // B is frozen until A, its own slices computed, has claimed one of B's (their lease ran out).
    const ofB = (await db.slice.findMany({ where: { jobId: id, done: false, owner: "node-b" }, select: { id: true } })).map((s) => s.id);
    expect(ofB.length, "node B holds unfinished slices when it freezes").toBeGreaterThan(0);
    expect(b.child.kill("SIGSTOP")).toBe(true);
    await waitFor(async () => (await db.slice.count({ where: { id: { in: ofB }, owner: "node-a" } })) > 0, 60_000, "node A to claim a slice of frozen node B", 50)
      .catch(async (e: Error) => {
        throw new Error(`${e.message}\n${await describeCluster(db, id, [a])}`);
      })
      .finally(() => b.child.kill("SIGCONT"));
    // B drains what it had to write (fenced out) while A computes; A dies holding unfinished slices.
    await new Promise((r) => setTimeout(r, 2000));
    const held = await waitFor(async () => {
      const rows = await db.slice.findMany({ where: { jobId: id, done: false, owner: "node-a" }, select: { id: true, epoch: true } });
      return rows.length ? rows : undefined;
    }, 30_000, "node A to hold unfinished slices", 20);
    const exit = await a.kill9();
    const killedAt = Date.now();
    expect(exit.signal).toBe("SIGKILL");

    // Node B starts on A's slices once the lease has run out (the next ones as its queue runs
    // low: it claims what its volunteers can keep busy, a slice of 256 units at a time here).
    const takenOverAt = await waitFor(async () => {
      const now = await db.slice.findMany({ where: { id: { in: held.map((h) => h.id) } }, select: { owner: true, done: true } });
      return now.some((s) => s.owner === "node-b" || s.done) ? Date.now() : undefined;
    }, 60_000, "node B to take over node A's slices", 50).catch(async (e: Error) => {
      throw new Error(`${e.message}\n${await describeCluster(db, id, [b])}`);
    });
    expect(takenOverAt - killedAt).toBeLessThanOrEqual((LEASE_SECONDS + 5) * 1000);
    if (process.env.TABGRID_TEST_LOG) console.log(`takeover ${takenOverAt - killedAt} ms after the kill (lease ${LEASE_SECONDS} s)`);

    await waitForJobEnd(db, id, 200_000, killedAt).catch(async (e: Error) => {
      throw new Error(`${e.message}\n${await describeCluster(db, id, [b])}`);
    });
    const job = await db.job.findUniqueOrThrow({ where: { id } });
    expect(job).toMatchObject({ state: "completed", unitsDone: CHUNKS, error: null });
    expect(job.result).not.toBeNull();

    // Every unit done exactly once, with exactly two paid agreeing results from two hosts; the
    // cost is the payouts, nothing is left pending or in escrow.
    const settled = await expectSettledJob(db, id, { exactQuorum: true });
    expect(settled.units.filter((u) => u.done)).toHaveLength(CHUNKS);
    expect(job.cost).toBe(job.estimate);
    expect(await db.result.count({ where: { jobId: id, state: "pending" } })).toBe(0);
    // The books: every transaction sums to zero, every balance equals its entries.
    const audit = await auditLedger(db);
    expect(audit).toMatchObject({ ok: true, unbalancedTx: [], driftedAccounts: [], negativeAccounts: [] });
    const refunds = await db.ledgerEntry.count({ where: { jobId: id, kind: "refund" } });
    expect(refunds).toBeLessThanOrEqual(2); // one transaction (two entries) at most

    // Task ids carry their node: none of B's collides with one of A's.
    const results = await db.result.findMany({ where: { jobId: id }, select: { id: true } });
    expect(results.some((r) => r.id.startsWith("node-a.")) && results.some((r) => r.id.startsWith("node-b."))).toBe(true);
    // The volunteers that were on A came back through B and went on computing there.
    const later = await Promise.all(volunteers.slice(0, 2).map((v) =>
      db.result.count({ where: { jobId: id, volunteerId: v.identity.volunteerId, receivedAt: { gt: new Date(killedAt) } } })));
    expect(Math.max(...later), `results of node A's volunteers after the kill: ${later.join(", ")}`).toBeGreaterThan(0);
    expect((await fetch(`${b.url}/api/health`)).ok).toBe(true);
  });
});
