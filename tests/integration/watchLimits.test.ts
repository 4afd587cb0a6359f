import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCaller } from "../../server/api/root";
import { createContextInner } from "../../server/api/trpc";
import { MAX_WATCHES_PER_ACCOUNT } from "../../server/api/routers/jobs";
import { trpc } from "../helpers/clients";
import { createUserWithKey, startTestServer, type TestServer } from "../helpers/server";

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
