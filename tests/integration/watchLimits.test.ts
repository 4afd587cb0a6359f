import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCaller } from "../../server/api/root";
import { createContextInner } from "../../server/api/trpc";
import { MAX_WATCHES_PER_ACCOUNT } from "../../server/api/routers/jobs";
import { trpc } from "../helpers/clients";
import { ROUNDS_PER_READ } from "../../server/services/jobs/rounds";
import { createUserWithKey, runCli, startTestServer, type TestServer } from "../helpers/server";
import { writeRounds } from "../helpers/rounds";

// jobs.watch sends a whole snapshot of the job when it starts and updates after: one account
// may hold MAX_WATCHES_PER_ACCOUNT at once and start them at a bounded rate.
describe("jobs.watch per account", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer();
  });
  afterAll(() => srv?.close());

  it(`holds ${MAX_WATCHES_PER_ACCOUNT} watches of an account at once; another account is not affected`, async () => {
    const alice = await createUserWithKey(srv.deps, "watcher@example.com");
    const bob = await createUserWithKey(srv.deps, "other@example.com");
    // No volunteer: the jobs stay running.
    const mine = await trpc(srv.url, alice.apiKey).jobs.submit.mutate({ kernel: "pi", chunks: 2 } as never);
    const his = await trpc(srv.url, bob.apiKey).jobs.submit.mutate({ kernel: "pi", chunks: 2 } as never);
    const caller = (u: typeof alice) => createCaller(createContextInner(srv.deps, { id: u.user.id, email: u.user.email, role: u.user.role }));
    const start = async (u: typeof alice, id: string) => {
      const iter = (await caller(u).jobs.watch({ id }))[Symbol.asyncIterator]();
      const first = await iter.next();
      return { iter, first };
    };
    const held = [];
    for (let i = 0; i < MAX_WATCHES_PER_ACCOUNT; i++) held.push(await start(alice, mine.id));
    expect(held.every((w) => (w.first.value as { id: string }).id === mine.id)).toBe(true);
    await expect(start(alice, mine.id)).rejects.toMatchObject({ code: "TOO_MANY_REQUESTS", message: expect.stringMatching(/watching 16 jobs live/) });
    expect(((await start(bob, his.id)).first.value as { id: string }).id).toBe(his.id);

    // One closed, one more may start (once the start rate allows).
    await held.pop()!.iter.return!(undefined);
    await new Promise((r) => setTimeout(r, 600));
    held.push(await start(alice, mine.id));
    for (const w of held) await w.iter.return!(undefined);
  });

  it("refuses watches started faster than 2 a second past a burst of 16, however briefly each is held", async () => {
    const carol = await createUserWithKey(srv.deps, "churner@example.com");
    const { id } = await trpc(srv.url, carol.apiKey).jobs.submit.mutate({ kernel: "pi", chunks: 2 } as never);
    const caller = createCaller(createContextInner(srv.deps, { id: carol.user.id, email: carol.user.email, role: carol.user.role }));
    let started = 0;
    let refused: unknown;
    // 40 starts would take 12 s at the allowed rate: well before, one is refused.
    for (let i = 0; i < 40 && !refused; i++) {
      try {
        const iter = (await caller.jobs.watch({ id }))[Symbol.asyncIterator]();
        await iter.next();
        started++;
        await iter.return!(undefined);
      } catch (e) {
        refused = e;
      }
    }
    expect(refused).toMatchObject({ code: "TOO_MANY_REQUESTS", message: "Too many job watches started; try again in a few seconds." });
    expect(started).toBeGreaterThanOrEqual(16);
  });
});

// A job of many rounds was sent whole at every look: 10,000 rounds were 2 MB of JSON and
// 130-200 ms of the server's loop per jobs.get or watch start. Now ROUNDS_PER_READ at most
// come at once; the watch, the CLI and the page take the rest a page at a time.
describe("a job of many rounds", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({ SPOT_CHECKS: "off" });
  });
  afterAll(() => srv?.close());

  it(`is read ${ROUNDS_PER_READ} rounds at a time, by jobs.get, jobs.watch and tabgrid job`, async () => {
    const owner = await createUserWithKey(srv.deps, "rounds@example.com");
    const api = trpc(srv.url, owner.apiKey);
    // No volunteer: the job stays running, and its rounds are written here (more than k-means
    // may run: only their reading is tested).
    const { id } = await api.jobs.submit.mutate({ kernel: "kmeans", chunks: 2, params: { seed: 1, k: 3, points: 600 } } as never);
    const total = 2 * ROUNDS_PER_READ + 500;
    await writeRounds(srv.deps.db, id, total);

    const first = await api.jobs.get.query({ id });
    expect(first.rounds.map((r) => r.round)).toEqual(Array.from({ length: ROUNDS_PER_READ }, (_, i) => i + 1));
    expect(first).toMatchObject({ round: total, roundsMore: true, roundsAfter: null });
    const last = await api.jobs.get.query({ id, roundsAfter: 2 * ROUNDS_PER_READ });
    expect(last.rounds).toHaveLength(500);
    expect(last).toMatchObject({ round: total, roundsMore: false });

    // The watch sends every round, a page per update, without waiting for the job to change.
    const caller = createCaller(createContextInner(srv.deps, { id: owner.user.id, email: owner.user.email, role: owner.user.role }));
    const iter = (await caller.jobs.watch({ id }))[Symbol.asyncIterator]();
    const seen: number[] = [];
    for (;;) {
      const { value } = (await iter.next()) as { value: { rounds: Array<{ round: number }>; roundsAfter: number | null; roundsMore: boolean } };
      expect(value.rounds.length).toBeLessThanOrEqual(ROUNDS_PER_READ);
      expect(value.roundsAfter).toBe(seen.length ? seen.at(-1) : null);
      seen.push(...value.rounds.map((r) => r.round));
      if (!value.roundsMore) break;
    }
    await iter.return!(undefined);
    expect(seen).toEqual(Array.from({ length: total }, (_, i) => i + 1));

    // The CLI's report has them all.
    const shown = await runCli(["job", id, "--json", "--url", srv.url, "--api-key", owner.apiKey]);
    expect(shown.code, shown.stderr).toBe(0);
    const report = JSON.parse(shown.stdout) as { round: number; rounds: Array<{ round: number }> };
    expect(report.round).toBe(total);
    expect(report.rounds.map((r) => r.round)).toEqual(seen);
  });
});
