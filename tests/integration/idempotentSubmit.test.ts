import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { userAccount } from "../../server/services/credits/accounts";
import { requestHash, submitOnce } from "../../server/services/jobs/idempotency";
import { submitInputSchema, submitJob } from "../../server/services/jobs/submit";
import { trpc, trpcError } from "../helpers/clients";
import { createUserWithKey, runCli, startTestServer, type TestServer } from "../helpers/server";

// jobs.submit under a client's key: a retry after a timeout, or a double click, returns the
// first job instead of creating and charging a second one.
describe("idempotent job submissions", () => {
  let srv: TestServer;
  let alice: Awaited<ReturnType<typeof createUserWithKey>>;
  let bob: Awaited<ReturnType<typeof createUserWithKey>>;
  const job = { kernel: "pi", chunks: 4, params: { samples: 40_000, seed: 1 } };
  const balance = async (userId: string) => (await srv.deps.db.account.findUniqueOrThrow({ where: { id: userAccount(userId) } })).balance;
  const jobsOf = (ownerId: string) => srv.deps.db.job.count({ where: { ownerId } });
  /** A raw tRPC HTTP call, as curl would make it, with the header of one's choosing. */
  const post = (apiKey: string, body: unknown, headers: Record<string, string>) =>
    fetch(`${srv.url}/api/trpc/jobs.submit`, {
      method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}`, ...headers }, body: JSON.stringify(body),
    });

  beforeAll(async () => {
    srv = await startTestServer();
    alice = await createUserWithKey(srv.deps, "alice@example.com");
    bob = await createUserWithKey(srv.deps, "bob@example.com");
  }, 40_000);
  afterAll(async () => srv?.close());

  it("returns the first job for a repeat of the key, charged once", async () => {
    const api = trpc(srv.url, alice.apiKey);
    const before = await balance(alice.user.id);
    const first = await api.jobs.submit.mutate({ ...job, idempotencyKey: "order-1" });
    expect(first.replayed).toBe(false);
    const held = before - (await balance(alice.user.id));
    expect(held).toBe(first.estimate);
    // The same fields in another order are the same submission.
    const again = await api.jobs.submit.mutate({ params: { seed: 1, samples: 40_000 }, chunks: 4, kernel: "pi", idempotencyKey: "order-1" });
    expect(again).toEqual({ ...first, replayed: true });
    expect(await jobsOf(alice.user.id)).toBe(1);
    expect(before - (await balance(alice.user.id))).toBe(held);
  });

  it("runs concurrent repeats once", async () => {
    const api = trpc(srv.url, alice.apiKey);
    const jobsBefore = await jobsOf(alice.user.id);
    const before = await balance(alice.user.id);
    const answers = await Promise.all(Array.from({ length: 6 }, () => api.jobs.submit.mutate({ ...job, idempotencyKey: "order-2" })));
    expect(new Set(answers.map((a) => a.id)).size).toBe(1);
    expect(answers.filter((a) => !a.replayed)).toHaveLength(1);
    expect(await jobsOf(alice.user.id)).toBe(jobsBefore + 1);
    expect(before - (await balance(alice.user.id))).toBe(answers[0]!.estimate);
  });

  it("refuses a different submission under a key whose first submission is still in progress", async () => {
    // The first submission is held in its write until the second has been refused: which of two
    // HTTP requests sent together arrives first is the network's choice, so this drives the
    // server's own path with the order fixed.
    const { idempotencyKey, ...submission } = submitInputSchema.parse({ ...job, idempotencyKey: "order-2b" });
    const { idempotencyKey: _key, ...otherSubmission } = submitInputSchema.parse({ ...job, chunks: 5, idempotencyKey: "order-2b" });
    const jobsBefore = await jobsOf(alice.user.id);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const first = submitOnce(srv.deps, alice.user.id, idempotencyKey!, requestHash(submission), async () => {
      await held;
      return submitJob(srv.deps, alice.user.id, submission, { idempotencyKey: idempotencyKey!, requestHash: requestHash(submission) });
    });
    const refused = submitOnce(srv.deps, alice.user.id, idempotencyKey!, requestHash(otherSubmission),
      () => submitJob(srv.deps, alice.user.id, otherSubmission, { idempotencyKey: idempotencyKey!, requestHash: requestHash(otherSubmission) }));
    await expect(refused).rejects.toMatchObject({ code: "UNPROCESSABLE_CONTENT", message: expect.stringMatching(/still in progress/) });
    release();
    expect((await first).replayed).toBe(false);
    expect(await jobsOf(alice.user.id)).toBe(jobsBefore + 1);
    // Over HTTP, sent together: whichever arrives first wins, the other is refused with 422.
    const api = trpc(srv.url, alice.apiKey);
    const both = await Promise.allSettled([
      api.jobs.submit.mutate({ ...job, idempotencyKey: "order-2c" }),
      api.jobs.submit.mutate({ ...job, chunks: 5, idempotencyKey: "order-2c" }),
    ]);
    expect(both.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    const loser = both.find((r): r is PromiseRejectedResult => r.status === "rejected")!;
    expect(await trpcError(Promise.reject(loser.reason))).toMatchObject({ code: "UNPROCESSABLE_CONTENT", httpStatus: 422 });
    expect(await jobsOf(alice.user.id)).toBe(jobsBefore + 2);
  });

  it("takes the key from the Idempotency-Key header", async () => {
    const jobsBefore = await jobsOf(alice.user.id);
    const answers = [];
    for (let i = 0; i < 2; i++) {
      const res = await post(alice.apiKey, job, { "idempotency-key": "header-key-3" });
      expect(res.status).toBe(200);
      answers.push(((await res.json()) as { result: { data: { id: string; replayed: boolean } } }).result.data);
    }
    expect(answers[1]).toEqual({ ...answers[0], replayed: true });
    expect(await jobsOf(alice.user.id)).toBe(jobsBefore + 1);
    // The field and the header name one key.
    const both = await post(alice.apiKey, { ...job, idempotencyKey: "header-key-3" }, { "idempotency-key": "header-key-3" });
    expect(both.status).toBe(200);
    const differ = await post(alice.apiKey, { ...job, idempotencyKey: "another" }, { "idempotency-key": "header-key-3" });
    expect(differ.status).toBe(400);
    expect(await differ.text()).toMatch(/header and the idempotencyKey field differ/);
    expect(await jobsOf(alice.user.id)).toBe(jobsBefore + 1);
  });

  it("refuses the key reused for another submission, and keys that are not keys, creating nothing", async () => {
    const api = trpc(srv.url, alice.apiKey);
    await api.jobs.submit.mutate({ ...job, idempotencyKey: "order-4" });
    const jobsBefore = await jobsOf(alice.user.id);
    const before = await balance(alice.user.id);
    const reused = await trpcError(api.jobs.submit.mutate({ ...job, chunks: 5, idempotencyKey: "order-4" }));
    expect(reused).toMatchObject({ code: "UNPROCESSABLE_CONTENT", httpStatus: 422 });
    expect(reused.message).toMatch(/was used for another submission/);
    for (const idempotencyKey of ["", "has space", "x".repeat(256), "naïve"]) {
      expect(await trpcError(api.jobs.submit.mutate({ ...job, idempotencyKey }))).toMatchObject({ code: "BAD_REQUEST" });
    }
    const badHeader = await post(alice.apiKey, job, { "idempotency-key": "x".repeat(300) });
    expect(badHeader.status).toBe(400);
    expect(await jobsOf(alice.user.id)).toBe(jobsBefore);
    expect(await balance(alice.user.id)).toBe(before);
  });

  it("answers with the other's job when two servers take one key at the same moment", async () => {
    // Scopes of in-flight submissions of their own, as the nodes of a cluster have: each finds
    // no job under the key, each inserts, and the database's unique index refuses all but one.
    const { idempotencyKey, ...submission } = submitInputSchema.parse({ ...job, idempotencyKey: "race-5" });
    const hash = requestHash(submission);
    const jobsBefore = await jobsOf(alice.user.id);
    const before = await balance(alice.user.id);
    const scopes = Array.from({ length: 4 }, () => ({})).map((scope) => () =>
      submitOnce({ db: srv.deps.db, coordinator: scope as typeof srv.deps.coordinator }, alice.user.id, idempotencyKey!, hash,
        () => submitJob(srv.deps, alice.user.id, submission, { idempotencyKey: idempotencyKey!, requestHash: hash })));
    const answers = await Promise.all(scopes.map((run) => run()));
    expect(new Set(answers.map((a) => a.id)).size).toBe(1);
    expect(answers.filter((a) => !a.replayed)).toHaveLength(1);
    expect(await jobsOf(alice.user.id)).toBe(jobsBefore + 1);
    expect(before - (await balance(alice.user.id))).toBe(answers[0]!.estimate);
  });

  it("lets the CLI be run again with the same --idempotency-key", async () => {
    const jobsBefore = await jobsOf(alice.user.id);
    const submit = () => runCli(["submit", "pi", "--chunks", "4", "--params", '{"samples":40000,"seed":2}', "--idempotency-key", "cli-run-6", "--url", srv.url, "--api-key", alice.apiKey]);
    const first = await submit();
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/submitted job j\w+/);
    const again = await submit();
    expect(again.code, again.stderr).toBe(0);
    const id = /submitted job (j\w+)/.exec(first.stderr)![1];
    expect(again.stderr).toContain(`job ${id} was submitted before under this idempotency key`);
    expect(await jobsOf(alice.user.id)).toBe(jobsBefore + 1);
    const bad = await runCli(["submit", "pi", "--chunks", "4", "--idempotency-key", "two words", "--url", srv.url, "--api-key", alice.apiKey]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/idempotency key is printable ASCII/);
    expect(await jobsOf(alice.user.id)).toBe(jobsBefore + 1);
  }, 60_000);

  it("keeps one account's keys apart from another's", async () => {
    const mine = await trpc(srv.url, alice.apiKey).jobs.submit.mutate({ ...job, idempotencyKey: "shared-name" });
    const theirs = await trpc(srv.url, bob.apiKey).jobs.submit.mutate({ ...job, idempotencyKey: "shared-name" });
    expect(theirs.replayed).toBe(false);
    expect(theirs.id).not.toBe(mine.id);
    expect(await jobsOf(bob.user.id)).toBe(1);
  });
});
