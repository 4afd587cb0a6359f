import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrisma, type Db } from "../../server/store/prisma";
import { createUser } from "../../server/services/users/users";
import { createApiKey } from "../../server/auth/apiKeys";
import { auditLedger, balanceOf } from "../../server/services/credits/ledger";
import { anonAccount, escrowAccount, MILLI, userAccount } from "../../server/services/credits/accounts";
import { trpc } from "../helpers/clients";
import { computeLocally, Permits, startFleet, type FleetVolunteer } from "../helpers/fleet";
import { expectSettledJob } from "../helpers/settlement";
import { freePort, startServerProcess, tempDatabase, type ServerProcess } from "../helpers/serverProcess";
import { testEngine } from "../helpers/testDb";
import { waitFor } from "../helpers/server";

// The server process dies with SIGKILL in the middle of a job (no shutdown handler, whatever
// was queued for commit is lost) and is started again on the same port and database. The
// volunteers reconnect by themselves. Results committed before the kill must count, nothing
// may be paid twice, and the job must come out as if nothing had happened.
const CHUNKS = 40;
const PARAMS = { samples: CHUNKS * 1_000_000, seed: 31337 };
const STARTER_CREDITS = 100;

describe("the server killed with SIGKILL mid-job", () => {
  let tmp: Awaited<ReturnType<typeof tempDatabase>>;
  let db: Db;
  const servers: ServerProcess[] = [];
  let fleet: FleetVolunteer[] = [];

  beforeAll(async () => {
    tmp = await tempDatabase();
    db = createPrisma(tmp.databaseUrl);
    // SQLite: this client keeps the file open while servers come and go, in the server's mode.
    if (testEngine() === "sqlite") await db.$executeRawUnsafe("PRAGMA journal_mode = WAL");
  });
  afterAll(async () => {
    for (const v of fleet) v.stop();
    for (const s of servers) await s.stop();
    await db?.$disconnect();
    await tmp?.remove();
  });

  it("recovers the job: committed results are kept, nothing is paid twice, the result is unchanged", async () => {
    const expected = computeLocally("pi", PARAMS, CHUNKS);
    const starter = STARTER_CREDITS * MILLI;
    await createUser(db, { email: "root@example.com", password: "correct horse battery" }, starter);
    const consumer = await createUser(db, { email: "consumer@example.com", password: "correct horse battery" }, starter);
    const { key: apiKey } = await createApiKey(db, consumer.id, "server kill test");

    const port = await freePort();
    const start = async () => {
      const s = await startServerProcess({
        port, databaseUrl: tmp.databaseUrl, dataDir: tmp.dir, env: { STARTER_CREDITS: String(STARTER_CREDITS) },
      });
      servers.push(s);
      return s;
    };
    const first = await start();
    const gate = new Permits();
    fleet = await startFleet(first.url, 6, { prefix: "survivor", gate });

    // Two replicas, quorum two, and no adaptive replication: every unit is paid exactly twice.
    const { id } = await trpc(first.url, apiKey).jobs.submit.mutate({
      kernel: "pi", chunks: CHUNKS, params: PARAMS, replication: { replicas: 2, quorum: 2, adaptive: false },
    });

    // Kill once some units are validated and some results await their partner replica. The
    // fleet computes one task at a time and the state is read once it is at rest: polling a
    // running fleet missed the window on a loaded machine (the fleet shares this process's
    // thread, so one poll could see ten units pass).
    const computed = () => fleet.reduce((n, v) => n + v.computed, 0);
    const state = async () => {
      const rows = await db.result.findMany({ where: { jobId: id }, select: { id: true, state: true, unitId: true, volunteerId: true } });
      const done = await db.workUnit.count({ where: { jobId: id, done: true } });
      return { done, rows, key: `${done}/${rows.map((r) => r.state).join()}` };
    };
    let before: Awaited<ReturnType<typeof state>> | undefined;
    for (let step = 1; !before; step++) {
      gate.release(1);
      await waitFor(() => computed() >= step, 20_000, () => `task ${step} to be computed`);
      // At rest: the same rows in the same states for a few polls (a result is committed, and
      // its unit decided, within milliseconds; one the server refused never shows).
      let last = "";
      let same = 0;
      const now = await waitFor(async () => {
        const s = await state();
        same = s.key === last ? same + 1 : 0;
        last = s.key;
        return same >= 5 ? s : undefined;
      }, 20_000, () => `the job's rows to settle after task ${step} (last seen ${last})`, 50);
      expect(now.done, "the window passed").toBeLessThanOrEqual(CHUNKS - 10);
      if (now.done >= 5 && now.rows.some((r) => r.state === "pending")) before = now;
    }
    const exit = await first.kill9();
    const killedAt = Date.now();
    expect(exit.signal).toBe("SIGKILL");
    expect(first.output()).not.toMatch(/committing pending results/);
    await waitFor(() => fleet.every((v) => v.snapshot().connection !== "connected"), 5000, "the volunteers to notice");

    // Still what was committed before the kill: the job runs, nothing finished.
    const mid = await db.job.findUniqueOrThrow({ where: { id } });
    expect(mid.state).toBe("running");
    expect(mid.unitsDone).toBeGreaterThanOrEqual(before.done);
    expect(mid.unitsDone).toBeLessThan(CHUNKS);
    const pendingBefore = before.rows.filter((r) => r.state === "pending");
    expect(pendingBefore.length).toBeGreaterThanOrEqual(1);

    // Same port, same database; the volunteers find it again on their own.
    gate.open();
    const second = await start();
    expect(second.url).toBe(first.url);
    await waitFor(() => fleet.every((v) => v.snapshot().connection === "connected"), 20_000, "the volunteers to reconnect");
    await waitFor(async () => (await db.job.findUnique({ where: { id }, select: { state: true } }))?.state !== "running", 30_000, "the job to end");
    expect(second.output()).toMatch(/recovered 1 running job\(s\)/);

    // As if nothing had happened.
    const api = trpc(second.url, apiKey);
    const job = await api.jobs.get.query({ id });
    expect(job).toMatchObject({ state: "completed", error: null, unitsDone: CHUNKS });
    expect(await api.jobs.result.query({ id })).toEqual(expected.result);
    const units = await db.workUnit.findMany({ where: { jobId: id }, select: { output: true }, orderBy: { idx: "asc" } });
    expect(units.map((u) => JSON.parse(u.output!))).toEqual(expected.outputs);

    // Every unit has exactly two paid, valid results from two hosts; job cost = payouts.
    const settled = await expectSettledJob(db, id, { exactQuorum: true });
    expect(settled.results.filter((r) => r.state === "valid")).toHaveLength(2 * CHUNKS);
    expect(settled.results.filter((r) => r.state !== "valid")).toEqual([]);
    const pays = new Map(settled.units.map((u) => [u.id, u.pay]));
    expect(job.cost).toBe(2 * [...pays.values()].reduce((s, p) => s + p, 0));
    expect(job.cost).toBe(job.estimate);

    // Results committed before the kill were kept; those that awaited their partner were
    // recovered, validated with it after the restart and paid once.
    const after = new Map(settled.results.map((r) => [r.id, r]));
    for (const r of before.rows) {
      expect(after.get(r.id), `result ${r.id} committed before the kill`).toMatchObject({ unitId: r.unitId, volunteerId: r.volunteerId });
    }
    for (const r of pendingBefore) expect(after.get(r.id)).toMatchObject({ state: "valid", paid: pays.get(r.unitId) });
    expect(settled.results.some((r) => r.receivedAt.getTime() > killedAt)).toBe(true);

    // Per volunteer: paid for its valid results, once: ledger, balance, counters and client agree.
    const hosts = await db.volunteer.findMany({ select: { id: true, earned: true, tasksDone: true } });
    expect(hosts.map((h) => h.id).sort()).toEqual(fleet.map((v) => v.identity.volunteerId).sort());
    for (const h of hosts) {
      const mine = settled.results.filter((r) => r.volunteerId === h.id);
      const paid = mine.reduce((s, r) => s + r.paid, 0);
      const payouts = await db.ledgerEntry.aggregate({ where: { accountId: anonAccount(h.id), kind: "payout" }, _sum: { amount: true } });
      expect(payouts._sum.amount ?? 0).toBe(paid);
      expect(settled.paidByAccount.get(anonAccount(h.id)) ?? 0).toBe(paid);
      expect(await balanceOf(db, anonAccount(h.id))).toBe(paid);
      expect(h).toMatchObject({ earned: paid, tasksDone: mine.length });
    }

    // The books: consumer paid exactly the cost, escrow empty, everything balanced.
    expect(await balanceOf(db, escrowAccount(id))).toBe(0);
    expect(await balanceOf(db, userAccount(consumer.id))).toBe(starter - job.cost);
    expect(await auditLedger(db)).toMatchObject({ ok: true, total: 0 });
  });
});
