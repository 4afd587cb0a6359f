import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditLedger, balanceOf } from "../../server/services/credits/ledger";
import { anonAccount, escrowAccount, MILLI, userAccount } from "../../server/services/credits/accounts";
import {
  createUserWithKey, newIdentity, sleep, startCliVolunteer, startTestServer, waitFor, waitForVolunteer,
  type CliVolunteer, type TestServer,
} from "../helpers/server";
import { RawVolunteer, trpc, trpcError } from "../helpers/clients";

let srv: TestServer;
let starter: number;
let consumer: Awaited<ReturnType<typeof createUserWithKey>>;
let volunteer: CliVolunteer;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
  srv = await startTestServer();
  starter = Math.round(srv.deps.env.STARTER_CREDITS * MILLI);
  // The first account is made admin; the people in these tests are ordinary users.
  await createUserWithKey(srv.deps, "root@example.com");
  consumer = await createUserWithKey(srv.deps, "consumer@example.com");
  volunteer = startCliVolunteer(srv.url, 1, { dir: srv.dir, name: "anonymous" });
  cleanups.push(() => volunteer.stop());
  await waitForVolunteer(srv.deps, volunteer.identity.volunteerId);
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await srv?.close();
});

// One replica: these tests follow one volunteer's credits, so a lone volunteer must be able to
// complete a job (with two replicas it would need a second host).
async function runJob(chunks: number, samples: number) {
  const { id } = await trpc(srv.url, consumer.apiKey).jobs.submit.mutate({ kernel: "pi", chunks, params: { samples }, replication: { replicas: 1 } });
  await waitFor(
    async () => (await srv.deps.db.job.findUnique({ where: { id }, select: { state: true } }))?.state === "completed",
    30_000,
    `job ${id} to complete`,
  );
  await srv.deps.coordinator.drain();
  return srv.deps.db.job.findUniqueOrThrow({ where: { id } });
}

describe("anonymous volunteer credits", () => {
  it("are held on anon:<volunteerId> and move to the user who claims them with the right token", async () => {
    const { db } = srv.deps;
    const { volunteerId, token } = volunteer.identity;
    expect(srv.deps.coordinator.volunteers().find((v) => v.volunteerId === volunteerId)).toMatchObject({ userId: null });

    const job = await runJob(6, 6_000_000);
    expect(job.cost).toBe(job.estimate);
    expect(job.cost).toBeGreaterThan(0);
    expect(await balanceOf(db, anonAccount(volunteerId))).toBe(job.cost);

    const claimer = await createUserWithKey(srv.deps, "claimer@example.com");
    const mine = trpc(srv.url, claimer.apiKey);
    // Anyone may look at what an id holds (the volunteer page does, signed out).
    expect(await trpc(srv.url).account.volunteer.query({ volunteerId })).toEqual({ tasksDone: 6, earned: job.cost, claimed: false, held: job.cost });
    const entries = await db.ledgerEntry.count();

    // Wrong token, unknown id, or nobody signed in: refused, nothing moves.
    for (const [who, input, code] of [
      [mine, { volunteerId, token: newIdentity().token }, "FORBIDDEN"],
      [mine, { volunteerId: newIdentity().volunteerId, token }, "FORBIDDEN"],
      [trpc(srv.url), { volunteerId, token }, "UNAUTHORIZED"],
    ] as const) {
      const e = await trpcError(who.account.claimVolunteer.mutate(input));
      expect(e.code).toBe(code);
      if (code === "FORBIDDEN") expect(e).toMatchObject({ httpStatus: 403, message: "Unknown volunteer id or wrong token." });
    }
    expect(await trpcError(mine.account.claimVolunteer.mutate({ volunteerId, token: "short" }))).toMatchObject({ code: "BAD_REQUEST" });
    expect(await balanceOf(db, anonAccount(volunteerId))).toBe(job.cost);
    expect(await mine.account.balance.query()).toBe(starter);
    expect(await db.ledgerEntry.count()).toBe(entries);
    expect((await db.volunteer.findUniqueOrThrow({ where: { id: volunteerId } })).userId).toBeNull();

    // The right token: everything held moves to the claimer, as one balanced "claim".
    expect(await mine.account.claimVolunteer.mutate({ volunteerId, token })).toBe(job.cost);
    expect(await balanceOf(db, anonAccount(volunteerId))).toBe(0);
    // Anyone sees that it is claimed now, not by whom.
    expect(await trpc(srv.url).account.volunteer.query({ volunteerId })).toEqual({ tasksDone: 6, earned: job.cost, claimed: true, held: 0 });
    expect(await mine.account.balance.query()).toBe(starter + job.cost);
    const claim = await db.ledgerEntry.findMany({ where: { kind: "claim" }, select: { accountId: true, amount: true, txId: true } });
    expect(claim).toHaveLength(2);
    expect(claim[0].txId).toBe(claim[1].txId);
    expect(claim.map((c) => [c.accountId, c.amount]).sort()).toEqual(
      [[anonAccount(volunteerId), -job.cost], [userAccount(claimer.user.id), job.cost]].sort(),
    );
    expect((await db.volunteer.findUniqueOrThrow({ where: { id: volunteerId } })).userId).toBe(claimer.user.id);
    const ledger = await mine.account.ledger.query();
    expect(ledger.entries[0]).toMatchObject({ kind: "claim", amount: job.cost });

    // Claiming again moves nothing; the books still balance.
    expect(await mine.account.claimVolunteer.mutate({ volunteerId, token })).toBe(0);
    expect(await mine.account.balance.query()).toBe(starter + job.cost);
    expect(await auditLedger(db)).toMatchObject({ ok: true, total: 0 });
  });

  it("a volunteer started with an API key earns straight into the user's account", async () => {
    const { db } = srv.deps;
    const earner = await createUserWithKey(srv.deps, "earner@example.com");
    const signedIn = startCliVolunteer(srv.url, 1, { dir: srv.dir, apiKey: earner.apiKey, name: "signed-in" });
    cleanups.push(() => signedIn.stop());
    const conn = await waitForVolunteer(srv.deps, signedIn.identity.volunteerId);
    expect(conn.userId).toBe(earner.user.id);
    // The anonymous volunteer leaves so that the signed-in one does all the work.
    await volunteer.stop();
    await waitFor(() => !srv.deps.coordinator.volunteers().some((v) => v.volunteerId === volunteer.identity.volunteerId), 5000, "the anonymous volunteer to leave");

    const job = await runJob(4, 4_000_000);
    const units = await db.workUnit.findMany({ where: { jobId: job.id }, select: { volunteerId: true } });
    expect(units.every((u) => u.volunteerId === signedIn.identity.volunteerId)).toBe(true);
    expect(await balanceOf(db, userAccount(earner.user.id))).toBe(starter + job.cost);
    expect(await db.account.findUnique({ where: { id: anonAccount(signedIn.identity.volunteerId) } })).toBeNull();
    expect((await auditLedger(db)).ok).toBe(true);

    // The anonymous volunteer comes back (same identity) for the cancellation test.
    volunteer = startCliVolunteer(srv.url, 1, { dir: srv.dir, identity: volunteer.identity, name: "anonymous" });
    cleanups.push(() => volunteer.stop());
    await signedIn.stop();
    await waitForVolunteer(srv.deps, volunteer.identity.volunteerId);
  });
});

describe("cancelling a running job", () => {
  it("stops dispatch, revokes leases, refunds the unused escrow and keeps the books balanced", async () => {
    const { db, coordinator } = srv.deps;
    const api = trpc(srv.url, consumer.apiKey);

    // A hand-driven volunteer that takes two tasks and never finishes them.
    const holder = await RawVolunteer.connect(srv.url);
    cleanups.push(() => holder.close());
    holder.hello(1);
    await holder.next("welcome");

    const before = await balanceOf(db, userAccount(consumer.user.id));
    const CHUNKS = 60;
    const { id, estimate } = await api.jobs.submit.mutate({
      kernel: "pi", chunks: CHUNKS, params: { samples: CHUNKS * 20_000_000 }, replication: { replicas: 1 },
    });
    expect(await balanceOf(db, userAccount(consumer.user.id))).toBe(before - estimate);
    expect(await balanceOf(db, escrowAccount(id))).toBe(estimate);
    await waitFor(() => holder.tasks().length === 2, 5000, "the holder to get two tasks");
    const held = holder.tasks().map((t) => t.taskId);
    await waitFor(() => (coordinator.progress(id)?.done ?? 0) >= 3, 30_000, "some units to be done");

    // Someone else cannot cancel it (or even see it).
    const other = await createUserWithKey(srv.deps, "other@example.com");
    expect(await trpcError(trpc(srv.url, other.apiKey).jobs.cancel.mutate({ id }))).toMatchObject({ code: "NOT_FOUND", message: `No job ${id}.` });

    const revokeFrom = holder.messages.length;
    const cancelled = await api.jobs.cancel.mutate({ id });
    expect(cancelled.state).toBe("cancelled");
    expect(cancelled.unitsDone).toBeLessThan(CHUNKS);
    const revoke = await holder.next("revoke", revokeFrom);
    expect(revoke.reason).toBe("job cancelled");
    expect([...revoke.taskIds].sort()).toEqual([...held].sort());
    expect(coordinator.progress(id)).toBeUndefined();
    expect(coordinator.status()).toMatchObject({ tasksQueued: 0, tasksRunning: 0, jobsRunning: 0 });

    await coordinator.drain();
    const row = await db.job.findUniqueOrThrow({ where: { id } });
    expect(row.state).toBe("cancelled");
    expect(row.finishedAt).not.toBeNull();
    const doneUnits = await db.workUnit.findMany({ where: { jobId: id, done: true }, select: { pay: true } });
    expect(row.unitsDone).toBe(doneUnits.length);
    expect(row.cost).toBe(doneUnits.reduce((s, u) => s + u.pay, 0));
    expect(row.cost).toBeGreaterThan(0);
    expect(row.cost).toBeLessThan(estimate);

    // Unused escrow went back to the consumer: they paid exactly for the finished units.
    expect(await balanceOf(db, escrowAccount(id))).toBe(0);
    const refund = await db.ledgerEntry.findMany({ where: { jobId: id, kind: "refund" }, select: { accountId: true, amount: true } });
    expect(refund).toEqual(expect.arrayContaining([{ accountId: userAccount(consumer.user.id), amount: estimate - row.cost }]));
    expect(refund).toHaveLength(2);
    expect(await balanceOf(db, userAccount(consumer.user.id))).toBe(before - row.cost);
    expect(await auditLedger(db)).toMatchObject({ ok: true, total: 0 });

    // A revoked task's result is refused unpaid.
    const late = await holder.request({ type: "results", results: [{ taskId: held[0], output: { inside: 15_000_000, samples: 20_000_000 } }] }, "ack");
    expect(late).toEqual({ type: "ack", accepted: [], rejected: [{ taskId: held[0], reason: "unknown-task" }] });

    // Nobody receives its tasks any more, and nothing more is paid for it.
    const snapshot = { units: row.unitsDone, entries: await db.ledgerEntry.count({ where: { jobId: id } }), anon: await balanceOf(db, anonAccount(volunteer.identity.volunteerId)) };
    const fresh = await RawVolunteer.connect(srv.url);
    cleanups.push(() => fresh.close());
    fresh.hello(4);
    await fresh.next("welcome");
    await sleep(500);
    await coordinator.drain();
    expect(fresh.tasks()).toEqual([]);
    expect(holder.tasks().map((t) => t.taskId)).toEqual(held);
    expect(await db.workUnit.count({ where: { jobId: id, done: true } })).toBe(snapshot.units);
    expect(await db.ledgerEntry.count({ where: { jobId: id } })).toBe(snapshot.entries);
    expect(await balanceOf(db, anonAccount(volunteer.identity.volunteerId))).toBe(snapshot.anon);
    expect(await trpcError(api.jobs.cancel.mutate({ id }))).toMatchObject({ code: "CONFLICT", message: `Job ${id} has already ended (cancelled).` });

    // The volunteers keep working on other jobs, and only on those.
    await fresh.close();
    await holder.close();
    const next = await runJob(3, 3_000_000);
    const units = await db.workUnit.findMany({ where: { jobId: next.id }, select: { volunteerId: true } });
    expect(units.every((u) => u.volunteerId === volunteer.identity.volunteerId)).toBe(true);
    expect(await db.workUnit.count({ where: { jobId: id, done: true } })).toBe(snapshot.units);
    expect((await auditLedger(db)).ok).toBe(true);
  });
});
