import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUserWithKey, startTestServer, waitFor, type TestServer } from "../helpers/server";
import { trpc, trpcError } from "../helpers/clients";
import { startVolunteer } from "../helpers/fleet";
import { userAccount } from "../../server/services/credits/accounts";

type User = Awaited<ReturnType<typeof createUserWithKey>>;
let srv: TestServer;
let consumer: User;
let alice: User, bob: User, carol: User;
const hostOf: Record<string, string> = {};
const DAY = 86_400_000;

/** One signed-in host computes a whole job alone (one replica), then stops. */
async function computeAlone(user: User, hostName: string, chunks: number, samples: number) {
  const v = startVolunteer(srv.url, { apiKey: user.apiKey, name: hostName });
  await v.connected();
  hostOf[hostName] = v.identity.volunteerId;
  const { id } = await trpc(srv.url, consumer.apiKey).jobs.submit.mutate({ kernel: "pi", chunks, params: { samples, seed: 1 }, replication: { replicas: 1 } });
  await waitFor(async () => (await srv.deps.db.job.findUnique({ where: { id } }))?.state === "completed", 30_000, `job ${id} to complete`);
  await srv.deps.coordinator.drain();
  v.stop();
}

/** Moves a user's payouts and their host's results `days` into the past. */
async function age(user: User, host: string, days: number) {
  const at = new Date(Date.now() - days * DAY);
  await srv.deps.db.ledgerEntry.updateMany({ where: { accountId: userAccount(user.user.id) }, data: { createdAt: at } });
  await srv.deps.db.result.updateMany({ where: { volunteerId: hostOf[host] }, data: { receivedAt: at } });
}

beforeAll(async () => {
  srv = await startTestServer({ PRICE_PER_CPU_SECOND: "1" });
  await createUserWithKey(srv.deps, "root@example.com");
  consumer = await createUserWithKey(srv.deps, "consumer@example.com");
  [alice, bob, carol] = await Promise.all(["alice@example.com", "bob@example.com", "carol@example.com"].map((e) => createUserWithKey(srv.deps, e)));
  const red = await trpc(srv.url, alice.apiKey).teams.create.mutate({ name: "Red" });
  await trpc(srv.url, bob.apiKey).teams.join.mutate({ id: red.id });
  await trpc(srv.url, carol.apiKey).teams.create.mutate({ name: "Blue" });

  // alice: 3 small units (5 mc each); bob: 2 big units (46 mc each); carol: 4 small units.
  await computeAlone(alice, "alice-laptop", 3, 2_700_000);
  await computeAlone(bob, "bob-desktop", 2, 18_000_000);
  await computeAlone(carol, "carol@example.com", 4, 3_600_000);
  // bob's work was a month ago, carol's three days ago; alice's is today.
  await age(bob, "bob-desktop", 31);
  await age(carol, "carol@example.com", 3);
}, 60_000);

afterAll(async () => {
  await srv?.close();
});

const board = (window: "today" | "week" | "all", by: "credits" | "validated") => trpc(srv.url).leaderboard.get.query({ window, by });
const summary = (rows: Array<{ name: string; credits: number; validated: number }>) => rows.map((r) => [r.name, r.credits, r.validated]);

describe("leaderboards", () => {
  it("rank hosts and teams by credits and by validated results in each window", async () => {
    const { db } = srv.deps;
    // The figures come from the rows: each host's paid valid results, each user's payouts.
    const paidBy = async (host: string) => (await db.result.aggregate({ where: { volunteerId: hostOf[host], state: "valid" }, _sum: { paid: true } }))._sum.paid!;
    const payouts = async (u: User) => (await db.ledgerEntry.aggregate({ where: { accountId: userAccount(u.user.id), kind: "payout" }, _sum: { amount: true } }))._sum.amount!;
    const [a, b, c] = [await paidBy("alice-laptop"), await paidBy("bob-desktop"), await paidBy("carol@example.com")];
    expect([a, b, c]).toEqual([15, 92, 20]);
    expect([await payouts(alice), await payouts(bob), await payouts(carol)]).toEqual([a, b, c]);

    const today = await board("today", "credits");
    expect(summary(today.volunteers)).toEqual([["alice-laptop", a, 3]]);
    expect(today.volunteers[0].team?.name).toBe("Red");
    expect(summary(today.teams)).toEqual([["Red", a, 3]]);

    const week = await board("week", "credits");
    expect(summary(week.volunteers)).toEqual([["c•••", c, 4], ["alice-laptop", a, 3]]);
    expect(summary(week.teams)).toEqual([["Blue", c, 4], ["Red", a, 3]]);

    const allByCredits = await board("all", "credits");
    expect(summary(allByCredits.volunteers)).toEqual([["bob-desktop", b, 2], ["c•••", c, 4], ["alice-laptop", a, 3]]);
    expect(summary(allByCredits.teams)).toEqual([["Red", a + b, 5], ["Blue", c, 4]]);
    expect(allByCredits.volunteers.map((r) => r.rank)).toEqual([1, 2, 3]);

    const allByValidated = await board("all", "validated");
    expect(summary(allByValidated.volunteers)).toEqual([["c•••", c, 4], ["alice-laptop", a, 3], ["bob-desktop", b, 2]]);
    expect(summary(allByValidated.teams)).toEqual([["Red", a + b, 5], ["Blue", c, 4]]);

    const weekByValidated = await board("week", "validated");
    expect(summary(weekByValidated.teams)).toEqual([["Blue", c, 4], ["Red", a, 3]]);

    // Public: nothing in any board names an email, even a host named after one.
    for (const w of [today, week, allByCredits, allByValidated]) expect(JSON.stringify(w)).not.toMatch(/@|example\.com/);
  });

  it("give each signed-in user their own history, which sums to their payouts", async () => {
    expect((await trpcError(trpc(srv.url).leaderboard.me.query())).code).toBe("UNAUTHORIZED");
    const mine = await trpc(srv.url, alice.apiKey).leaderboard.me.query();
    expect(mine.days).toHaveLength(30);
    expect(mine.total).toBe(15);
    expect(mine.days.at(-1)).toEqual({ day: new Date().toISOString().slice(0, 10), credits: 15 });
    expect(mine.days.reduce((s, d) => s + d.credits, 0)).toBe(15);
    expect(mine.hosts).toEqual([expect.objectContaining({ id: hostOf["alice-laptop"], name: "alice-laptop", validated: 3, validatedRecent: 3, earned: 15 })]);

    const carols = await trpc(srv.url, carol.apiKey).leaderboard.me.query();
    expect(carols.total).toBe(20);
    expect(carols.days[26].credits).toBe(20); // three days before today's bucket
    // bob's payouts are older than the 30 days shown, but his host keeps its all-time record.
    const bobs = await trpc(srv.url, bob.apiKey).leaderboard.me.query();
    expect(bobs.total).toBe(0);
    expect(bobs.hosts[0]).toMatchObject({ validated: 2, validatedRecent: 0, earned: 92 });
  });

  it("teams: a member can leave, and names are unique", async () => {
    const asBob = trpc(srv.url, bob.apiKey);
    expect((await trpcError(asBob.teams.create.mutate({ name: "Red" }))).code).toBe("CONFLICT");
    expect(await asBob.teams.mine.query()).toMatchObject({ name: "Red" });
    await asBob.teams.leave.mutate();
    expect(await asBob.teams.mine.query()).toBeNull();
    const all = await board("all", "credits");
    expect(summary(all.teams)).toEqual([["Blue", 20, 4], ["Red", 15, 3]]);
    expect(all.volunteers.find((v) => v.name === "bob-desktop")?.team).toBeNull();
  });

  it("teams: one left empty is deleted, so one account cannot fill the list; names that read as another are refused", async () => {
    const asBob = trpc(srv.url, bob.apiKey);
    const before = (await trpc(srv.url).teams.list.query()).map((t) => t.name);
    // Each new team moved bob out of the last, which nobody else was in.
    for (let i = 0; i < 5; i++) await asBob.teams.create.mutate({ name: `!!${i}` });
    expect(await srv.deps.db.team.count({ where: { name: { startsWith: "!!" } } })).toBe(1);
    expect((await trpc(srv.url).teams.list.query()).map((t) => t.name)).toEqual(["!!4", ...before].sort());
    await asBob.teams.leave.mutate();
    expect((await trpc(srv.url).teams.list.query()).map((t) => t.name)).toEqual(before);
    // Red keeps alice after bob left it earlier; the teams on the board stay.
    expect(before).toEqual(expect.arrayContaining(["Blue", "Red"]));
    for (const name of ["Real\u200bTeam", "Re\u202eal", "a\nb", "x\u0000y"]) {
      expect((await trpcError(asBob.teams.create.mutate({ name }))).message, JSON.stringify(name)).toMatch(/cannot contain control, zero-width or direction-changing characters/);
    }
  });
});
