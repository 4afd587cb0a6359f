import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditLedger, balanceOf } from "../../server/services/credits/ledger";
import { anonAccount, MILLI, userAccount } from "../../server/services/credits/accounts";
import { authenticate } from "../../server/services/users/users";
import { PROTOCOL_VERSION, VOLUNTEER_WS_PATH } from "../../worker/protocol/messages";
import {
  createUserWithKey, newIdentity, runCli, startCliVolunteer, startTestServer, TEST_SECRET, waitFor, waitForVolunteer,
  type CliVolunteer, type TestServer,
} from "../helpers/server";
import { dbSnapshot, RawVolunteer, trpc, trpcError } from "../helpers/clients";

const MAX_WS = 64 * 1024;

let srv: TestServer;
let consumer: Awaited<ReturnType<typeof createUserWithKey>>;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
  // Hand-driven volunteers count their tasks exactly: no ringers or probation (see attack.*.test.ts).
  srv = await startTestServer({ MAX_WS_MESSAGE_BYTES: String(MAX_WS), SPOT_CHECKS: "off" });
  consumer = await createUserWithKey(srv.deps, "consumer@example.com");
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await srv?.close();
});

const jobState = (id: string) => srv.deps.db.job.findUnique({ where: { id }, select: { state: true } }).then((j) => j?.state);

describe("the volunteer WebSocket rejects bad input without side effects", () => {
  it("answers every malformed or misplaced message clearly, changes nothing, and leaves a good volunteer working", async () => {
    const { db, coordinator } = srv.deps;
    const api = trpc(srv.url, consumer.apiKey);

    // A hand-driven volunteer that takes both units of job A and sits on them.
    const holder = await RawVolunteer.connect(srv.url);
    cleanups.push(() => holder.close());
    holder.hello(1);
    expect(await holder.next("welcome")).toMatchObject({ protocol: PROTOCOL_VERSION, window: 2, signedIn: false });
    // One replica: the point is a job whose only leases sit with the holder, not validation.
    const jobA = await api.jobs.submit.mutate({ kernel: "pi", chunks: 2, params: { samples: 2_000_000 }, replication: { replicas: 1 } });
    await waitFor(() => holder.tasks().length === 2, 5000, "the holder to get both units of job A");
    const [taskA1, taskA2] = holder.tasks();
    expect(taskA1.jobId).toBe(jobA.id);

    // A well-behaved headless volunteer, connected throughout (idle: nothing is queued).
    const good: CliVolunteer = startCliVolunteer(srv.url, 1, { dir: srv.dir, name: "good" });
    cleanups.push(() => good.stop());
    await waitForVolunteer(srv.deps, good.identity.volunteerId);

    const before = await dbSnapshot(db);
    expect(before.units.filter((u) => u.done)).toHaveLength(0);

    const bad = await RawVolunteer.connect(srv.url);
    cleanups.push(() => bad.close());
    const error = (frame: unknown) => bad.request(frame, "error");

    expect(await error("this is not json {")).toEqual({ type: "error", code: "bad-message", message: "message is not valid JSON" });
    const binary = bad.messages.length;
    bad.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    expect(await bad.next("error", binary)).toMatchObject({ code: "bad-message", message: "frames must be JSON text" });
    expect((await error({ type: "hello" })).message).toMatch(/^invalid message: protocol: /);
    expect((await error({ type: "launch-missiles" })).message).toMatch(/^invalid message: type: /);
    expect((await error([1, 2, 3])).message).toMatch(/^invalid message: /);
    expect((await error({ type: "hello", protocol: 1, volunteerId: "short", token: "x", threads: 1 })).message).toMatch(
      /volunteerId: volunteer ids are 8-64 letters/,
    );
    // Results before hello: refused, even for a real task id.
    expect(await error({ type: "results", results: [{ taskId: taskA1.taskId, output: { inside: 1, samples: 1_000_000 } }] })).toMatchObject({
      code: "bad-message",
      message: "send hello first",
    });

    // After a valid hello (0 threads: it gets no work of its own)...
    bad.hello(0);
    expect(await bad.next("welcome")).toMatchObject({ account: anonAccount(bad.identity.volunteerId), window: 0 });
    // ...a result for a task another volunteer holds, and for a task that never existed, are rejected unpaid.
    const ack = await bad.request(
      {
        type: "results",
        results: [
          { taskId: taskA1.taskId, output: { inside: 785_000, samples: 1_000_000 } },
          { taskId: "nope#1", output: { inside: 1, samples: 1 } },
          { taskId: taskA2.taskId, error: "pretend it failed" },
        ],
      },
      "ack",
    );
    expect(ack).toEqual({
      type: "ack",
      accepted: [],
      rejected: [
        { taskId: taskA1.taskId, reason: "not-holder" },
        { taskId: "nope#1", reason: "unknown-task" },
        { taskId: taskA2.taskId, reason: "not-holder" },
      ],
    });
    expect((await error({ type: "hello", protocol: PROTOCOL_VERSION, ...bad.identity, threads: 1 })).message).toBe("hello was already received");
    expect((await error({ type: "capacity", threads: -1 })).message).toMatch(/^invalid message: threads: /);
    expect(bad.closed).toBeUndefined();
    // The holder still holds its leases: the bogus error report did not re-queue them.
    expect(coordinator.progress(jobA.id)).toMatchObject({ done: 0, running: 2, queued: 0 });

    // An unsupported protocol version: refused with the reason, socket closed as a policy violation.
    const old = await RawVolunteer.connect(srv.url);
    old.hello(1, { protocol: 99 });
    const refusal = `protocol 99 is not supported; this server speaks ${PROTOCOL_VERSION}`;
    expect(await old.next("error")).toEqual({ type: "error", code: "hello-refused", message: refusal });
    expect(await old.waitClosed()).toEqual({ code: 1008, reason: refusal });

    // Someone else's volunteer id with the wrong token cannot take it over (or its credits).
    const thief = await RawVolunteer.connect(srv.url, { identity: { volunteerId: good.identity.volunteerId, token: newIdentity().token } });
    thief.hello(1);
    expect((await thief.next("error")).message).toMatch(/wrong token/);
    expect((await thief.waitClosed()).code).toBe(1008);

    // A frame above MAX_WS_MESSAGE_BYTES: closed with 1009 (message too big).
    const big = await RawVolunteer.connect(srv.url);
    big.send(JSON.stringify({ type: "hello", name: "x".repeat(MAX_WS + 1024) }));
    expect((await big.waitClosed()).code).toBe(1009);
    expect(big.messages).toEqual([]);

    // A stream of garbage: disconnected after too many invalid messages.
    const flood = await RawVolunteer.connect(srv.url);
    for (let i = 0; i < 25; i++) flood.send(`garbage ${i}`);
    expect(await flood.waitClosed()).toEqual({ code: 1008, reason: "too many invalid messages" });
    expect(flood.messages.filter((m) => m.type === "error").length).toBeGreaterThanOrEqual(19);

    // A wrong API key on the upgrade: plain HTTP 401, no socket.
    const refused = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const ws = new WebSocket(`${srv.url.replace(/^http/, "ws")}${VOLUNTEER_WS_PATH}`, { headers: { authorization: "Bearer tg_not-a-real-key" } });
      ws.on("open", () => reject(new Error("the upgrade with a wrong key was accepted")));
      ws.on("error", () => {});
      ws.on("unexpected-response", (_req, res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode!, body }));
      });
    });
    expect(refused).toEqual({ status: 401, body: "Invalid API key.\n" });

    // Nothing above touched jobs, units or money.
    await coordinator.drain();
    expect(await dbSnapshot(db)).toEqual(before);
    expect(coordinator.volunteers().map((v) => v.volunteerId)).toContain(good.identity.volunteerId);

    // The good volunteer kept working: it completes a job submitted now.
    const jobB = await api.jobs.submit.mutate({ kernel: "pi", chunks: 4, params: { samples: 4_000_000 }, replication: { replicas: 1 } });
    await waitFor(async () => (await jobState(jobB.id)) === "completed", 20_000, "job B to complete");
    const unitsB = await db.workUnit.findMany({ where: { jobId: jobB.id }, select: { volunteerId: true } });
    expect(unitsB.every((u) => u.volunteerId === good.identity.volunteerId)).toBe(true);

    // A result whose output has the wrong shape is an error, not a payment: the unit goes back
    // to the queue. Then the holder leaves and its other lease is re-queued too.
    const bogus = await holder.request({ type: "results", results: [{ taskId: taskA1.taskId, output: { inside: 3, samples: 2, extra: 1 } }] }, "ack");
    expect(bogus.accepted).toEqual([]);
    expect(bogus.rejected).toEqual([{ taskId: taskA1.taskId, reason: expect.stringMatching(/^invalid output: /) }]);
    await holder.close();
    await waitFor(async () => (await jobState(jobA.id)) === "completed", 20_000, "job A to complete");
    const unitsA = await db.workUnit.findMany({ where: { jobId: jobA.id }, select: { volunteerId: true } });
    expect(unitsA.every((u) => u.volunteerId === good.identity.volunteerId)).toBe(true);

    await coordinator.drain();
    expect((await auditLedger(db)).ok).toBe(true);
    for (const v of [holder, bad]) expect(await balanceOf(db, anonAccount(v.identity.volunteerId))).toBe(0);
    const paid = await db.job.aggregate({ where: { id: { in: [jobA.id, jobB.id] } }, _sum: { cost: true } });
    expect(await balanceOf(db, anonAccount(good.identity.volunteerId))).toBe(paid._sum.cost);
  });
});

describe("tRPC over HTTP rejects bad submissions with readable errors", () => {
  it("refuses unknown kernels and bad chunk counts with BAD_REQUEST and creates nothing", async () => {
    const { db } = srv.deps;
    const api = trpc(srv.url, consumer.apiKey);
    const count = async () => ({ jobs: await db.job.count(), entries: await db.ledgerEntry.count(), balance: await balanceOf(db, userAccount(consumer.user.id)) });
    const before = await count();

    const cases: Array<[unknown, RegExp]> = [
      [{ kernel: "nope", chunks: 2 }, /^Unknown kernel "nope"\. Available: pi, mandelbrot, primes, kmeans\.$/],
      [{ kernel: "constructor", chunks: 2 }, /^Unknown kernel "constructor"/],
      [{ kernel: "pi", chunks: 0 }, /^chunks: A job needs at least 1 chunk\.$/],
      [{ kernel: "pi", chunks: -5 }, /^chunks: A job needs at least 1 chunk\.$/],
      [{ kernel: "pi", chunks: 1.5 }, /^chunks: The chunk count must be a whole number\.$/],
      [{ kernel: "pi", chunks: 10 ** 9 }, /^Too many chunks: 1000000000\. This pi job can be split into at most 10000\.$/],
      [{ kernel: "pi", chunks: "4" }, /^chunks: /],
      [{ kernel: "pi", chunks: 4, params: { samples: "lots" } }, /^Invalid pi parameter samples: /],
    ];
    for (const [input, message] of cases) {
      const e = await trpcError(api.jobs.submit.mutate(input as never));
      expect(e, JSON.stringify(input)).toMatchObject({ code: "BAD_REQUEST", httpStatus: 400 });
      expect(e.message, JSON.stringify(input)).toMatch(message);
    }
    // The estimate (no side effects anyway) validates the same way.
    expect(await trpcError(api.jobs.estimate.query({ kernel: "nope", chunks: 1 }))).toMatchObject({ code: "BAD_REQUEST" });

    expect(await count()).toEqual(before);
  });

  it("answers a wrong API key with 401 'Invalid API key.', even on public procedures", async () => {
    const wrong = trpc(srv.url, "tg_this-key-does-not-exist");
    // One call at a time: a refusal that arrived before its turn would be an unhandled rejection.
    for (const call of [() => wrong.jobs.submit.mutate({ kernel: "pi", chunks: 1 }), () => wrong.cluster.status.query(), () => wrong.account.me.query()]) {
      expect(await trpcError(call())).toEqual({ code: "UNAUTHORIZED", httpStatus: 401, message: "Invalid API key." });
    }
    const res = await fetch(`${srv.url}/api/trpc/account.balance`, { headers: { authorization: "Bearer not-even-the-prefix" } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe("Invalid API key.");
    // No key at all is anonymous: public calls work, protected ones explain what is missing.
    expect(await trpc(srv.url).cluster.status.query()).toHaveProperty("volunteers");
    expect(await trpcError(trpc(srv.url).jobs.submit.mutate({ kernel: "pi", chunks: 1 }))).toEqual({
      code: "UNAUTHORIZED", httpStatus: 401, message: "Sign in (or pass an API key) to do this.",
    });
  });

  it("refuses a job the consumer cannot afford with PAYMENT_REQUIRED and leaves the balance alone", async () => {
    const poor = await startTestServer({ STARTER_CREDITS: "0.01" });
    cleanups.push(() => poor.close());
    const { db } = poor.deps;
    const { user, apiKey } = await createUserWithKey(poor.deps, "poor@example.com");
    expect(await balanceOf(db, userAccount(user.id))).toBe(10);
    const entries = await db.ledgerEntry.count();

    const api = trpc(poor.url, apiKey);
    const estimate = await api.jobs.estimate.query({ kernel: "pi", chunks: 2, params: { samples: 20_000_000 } });
    expect(estimate.estimate).toBeGreaterThan(10);
    const e = await trpcError(api.jobs.submit.mutate({ kernel: "pi", chunks: 2, params: { samples: 20_000_000 } }));
    expect(e).toMatchObject({ code: "PAYMENT_REQUIRED", httpStatus: 402 });
    expect(e.message).toBe(
      `Not enough credits: this needs ${estimate.estimate / MILLI} credits and the balance is 0.01. ` +
        "Volunteer some CPU time to earn credits, or submit fewer or smaller chunks.",
    );
    expect(await balanceOf(db, userAccount(user.id))).toBe(10);
    expect(await db.job.count()).toBe(0);
    expect(await db.workUnit.count()).toBe(0);
    expect(await db.ledgerEntry.count()).toBe(entries);
    expect(poor.deps.coordinator.status().jobsRunning).toBe(0);
    expect((await auditLedger(db)).ok).toBe(true);
  });
});

describe("the CLI and accounts reject bad input", () => {
  const cli = (...args: string[]) => runCli([...args, "--url", srv.url], { TABGRID_API_KEY: consumer.apiKey });

  it("prints a clear error and exits non-zero for an unknown kernel or a bad --chunks", async () => {
    const jobs = await srv.deps.db.job.count();
    const [unknown, notANumber, badParams, noKernel] = await Promise.all([
      cli("submit", "nope", "--chunks", "2"),
      cli("submit", "pi", "--chunks", "abc"),
      cli("submit", "pi", "--chunks", "2", "--params", "{not json"),
      cli("submit", "--chunks", "2"),
    ]);
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toBe("");
    expect(unknown.stderr.trim()).toBe('tabgrid submit: Unknown kernel "nope". Available: pi, mandelbrot, primes, kmeans.');
    expect(notANumber.code).toBe(2);
    expect(notANumber.stderr.trim()).toBe('tabgrid submit: --chunks must be a whole number (got "abc")');
    expect(badParams.code).toBe(2);
    expect(badParams.stderr).toMatch(/--params must be a JSON object/);
    expect(noKernel.code).toBe(2);
    expect(noKernel.stderr).toMatch(/name a kernel/);
    expect(await srv.deps.db.job.count()).toBe(jobs);
    // The usage lists the same kernels as the server offers.
    expect((await cli("--help")).stdout).toMatch(/^Kernels: pi, mandelbrot, primes, kmeans\./m);
  });

  it("authenticate returns null for a wrong password or an unknown email", async () => {
    const { db } = srv.deps;
    expect(await authenticate(db, "consumer@example.com", "wrong password")).toBeNull();
    expect(await authenticate(db, "nobody@example.com", consumer.password)).toBeNull();
    expect(await authenticate(db, "not an email", consumer.password)).toBeNull();
    expect(await authenticate(db, " Consumer@Example.com ", consumer.password)).toEqual({
      id: consumer.user.id, email: "consumer@example.com", role: consumer.user.role,
    });
  });

  it("signing up twice with the same email is a CONFLICT and grants nothing twice", async () => {
    const api = trpc(srv.url);
    const first = await api.account.signUp.mutate({ email: "twice@example.com", password: "password-one" });
    expect(first).toMatchObject({ email: "twice@example.com", role: "user" });
    const entries = await srv.deps.db.ledgerEntry.count();
    for (const email of ["twice@example.com", "TWICE@example.com"]) {
      expect(await trpcError(api.account.signUp.mutate({ email, password: "password-two" }))).toEqual({
        code: "CONFLICT", httpStatus: 409, message: "An account with this email already exists.",
      });
    }
    expect(await trpcError(api.account.signUp.mutate({ email: "short@example.com", password: "short" }))).toMatchObject({
      code: "BAD_REQUEST", message: "password: Passwords need at least 8 characters.",
    });
    expect(await srv.deps.db.user.count({ where: { email: { in: ["twice@example.com", "short@example.com"] } } })).toBe(1);
    expect(await srv.deps.db.ledgerEntry.count()).toBe(entries);
    expect(await authenticate(srv.deps.db, "twice@example.com", "password-two")).toBeNull();
  });

  it("`tabgrid admin create-user --api-key --json` prints a working key", async () => {
    const dbEnv = { DATABASE_URL: srv.databaseUrl, DATA_DIR: srv.dir, NEXTAUTH_SECRET: TEST_SECRET };
    // zod's email check wants a top-level domain of two letters or more (none has one letter).
    const [oneLetterTld, created] = await Promise.all([
      runCli(["admin", "create-user", "--email", "x@y.z", "--password", "longenough", "--api-key", "--json"], dbEnv),
      runCli(["admin", "create-user", "--email", "x@y.zz", "--password", "longenough", "--api-key", "--json"], dbEnv),
    ]);
    expect(oneLetterTld.code).toBe(1);
    expect(oneLetterTld.stdout).toBe("");
    expect(oneLetterTld.stderr.trim()).toBe("tabgrid admin: Enter a valid email address.");
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    const out = JSON.parse(created.stdout.trim());
    expect(Object.keys(out).sort()).toEqual(["apiKey", "email", "id", "role"]);
    expect(out).toMatchObject({ email: "x@y.zz", role: "user", apiKey: expect.stringMatching(/^tg_/) });

    const [status, wrong, again] = await Promise.all([
      runCli(["status", "--json", "--api-key", out.apiKey, "--url", srv.url]),
      runCli(["status", "--json", "--api-key", `${out.apiKey}x`, "--url", srv.url]),
      // The same email again: a clear error, not a stack trace.
      runCli(["admin", "create-user", "--email", "x@y.zz", "--password", "longenough", "--json"], dbEnv),
    ]);
    expect(status.stderr).toBe("");
    expect(status.code).toBe(0);
    const { volunteers, jobsRunning, threads } = srv.deps.coordinator.status();
    expect(JSON.parse(status.stdout)).toMatchObject({ volunteers, jobsRunning, threads });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr.trim()).toBe("tabgrid status: Invalid API key.");
    expect(again.code).toBe(1);
    expect(again.stderr.trim()).toBe("tabgrid admin: An account with this email already exists.");
    // The key identifies the new user.
    expect(await trpc(srv.url, out.apiKey).account.me.query()).toEqual({ id: out.id, email: "x@y.zz", role: "user" });
    expect(await trpc(srv.url, out.apiKey).account.balance.query()).toBe(srv.deps.env.STARTER_CREDITS * MILLI);
  });

  it("`tabgrid admin` on a database that is not there, or never migrated, says what to do and creates nothing", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-admin-"));
    try {
      const args = ["admin", "create-user", "--email", "first@example.com", "--password", "longenough"];
      const missing = path.join(dir, "missing.db");
      const none = await runCli(args, { DATABASE_URL: `file:${missing}`, NEXTAUTH_SECRET: TEST_SECRET });
      expect(none.code).toBe(1);
      expect(none.stderr.trim()).toBe(`tabgrid admin: no database at file:${missing}: start the server once with this DATABASE_URL (npm start creates and migrates its database), or run npm run db:migrate`);
      expect(fs.existsSync(missing)).toBe(false);
      const empty = path.join(dir, "empty.db");
      fs.writeFileSync(empty, "");
      const bare = await runCli(args, { DATABASE_URL: `file:${empty}`, NEXTAUTH_SECRET: TEST_SECRET });
      expect(bare.code).toBe(1);
      expect(bare.stderr.trim()).toMatch(/^tabgrid admin: the database at file:.*empty\.db has no Tabgrid tables yet: start the server once/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
