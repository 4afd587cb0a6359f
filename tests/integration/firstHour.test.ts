import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { balanceOf } from "../../server/services/credits/ledger";
import { escrowAccount, MILLI, userAccount } from "../../server/services/credits/accounts";
import { RawVolunteer, trpc } from "../helpers/clients";
import {
  createUserWithKey, runCli, startCliVolunteer, startTestServer, waitFor, waitForVolunteer, type CliVolunteer, type TestServer,
} from "../helpers/server";
import { expectSettledJob } from "../helpers/settlement";

// The first hour of a newcomer: a job computed by one's own machine completes; a quorum that
// the volunteers online cannot form is explained, and the owner can end the wait; a program
// that always throws fails its job with its own message.

describe("a lone newcomer's own machine", () => {
  let srv: TestServer;
  let volunteer: CliVolunteer | undefined;
  beforeAll(async () => {
    srv = await startTestServer();
  });
  afterAll(async () => {
    await volunteer?.stop();
    await srv?.close();
  });

  it("completes the newcomer's job with the default replication, at no cost", async () => {
    const { db, env } = srv.deps;
    const me = await createUserWithKey(srv.deps, "newcomer@example.com");
    volunteer = startCliVolunteer(srv.url, 2, { apiKey: me.apiKey, dir: srv.dir });
    await waitForVolunteer(srv.deps, volunteer.identity.volunteerId);
    const run = await runCli(["submit", "pi", "--chunks", "8", "--wait", "--json", "--url", srv.url], { TABGRID_API_KEY: me.apiKey }, 60_000);
    expect(run.stderr).toBe("");
    const out = JSON.parse(run.stdout);
    expect(out).toMatchObject({ status: "completed", done: 8, cost: 0, replication: { replicas: 2, quorum: 2 } });
    expect(out.result.estimate).toBeGreaterThan(3);
    expect(out.result.estimate).toBeLessThan(3.3);
    // One copy per unit, from the owner's own host, paid nothing: the hold came back whole.
    const results = await db.result.findMany({ where: { jobId: out.id }, select: { state: true, paid: true, accountId: true } });
    expect(results).toHaveLength(8);
    for (const r of results) expect(r).toEqual({ state: "valid", paid: 0, accountId: userAccount(me.user.id) });
    expect(await balanceOf(db, userAccount(me.user.id))).toBe(Math.round(env.STARTER_CREDITS * MILLI));
    expect(await balanceOf(db, escrowAccount(out.id))).toBe(0);
    await expectSettledJob(db, out.id);
  });

  it("tells a CLI volunteer of another account when its results wait for a confirming copy", async () => {
    await volunteer?.stop();
    const owner = await createUserWithKey(srv.deps, "owner@example.com");
    const helper = await createUserWithKey(srv.deps, "helper@example.com");
    volunteer = startCliVolunteer(srv.url, 2, { apiKey: helper.apiKey, dir: srv.dir });
    await waitForVolunteer(srv.deps, volunteer.identity.volunteerId);
    const { id } = await trpc(srv.url, owner.apiKey).jobs.submit.mutate({ kernel: "pi", chunks: 2 } as never);
    await waitFor(() => volunteer!.output().includes("2 results of yours wait for a volunteer from another account to confirm them"), 20_000, "the volunteer to be told");
    const accepted = await runCli(["job", id, "--accept-unconfirmed", "--json", "--url", srv.url], { TABGRID_API_KEY: owner.apiKey });
    expect(JSON.parse(accepted.stdout)).toMatchObject({ status: "completed", done: 2 });
    await waitFor(() => volunteer!.output().includes("none of your results waits for confirmation any more"), 5000, "the volunteer to be told again");
  });
});

describe("a quorum nobody online can complete", () => {
  let srv: TestServer;
  let bob: RawVolunteer;
  let alice: Awaited<ReturnType<typeof createUserWithKey>>;
  beforeAll(async () => {
    // Spot-checks off: the raw volunteer below answers by hand and would fail them.
    srv = await startTestServer({ SPOT_CHECKS: "off" });
    alice = await createUserWithKey(srv.deps, "alice@example.com");
    const b = await createUserWithKey(srv.deps, "bob@example.com");
    bob = await RawVolunteer.connect(srv.url, { headers: { authorization: `Bearer ${b.apiKey}` } });
    bob.hello(4);
    await bob.next("welcome");
  });
  afterAll(async () => {
    await bob?.close();
    await srv?.close();
  });

  /** Bob answers every task of the job he holds; the results wait for a second account. */
  async function waitingJob(chunks: number) {
    const api = trpc(srv.url, alice.apiKey);
    const { id } = await api.jobs.submit.mutate({ kernel: "pi", chunks } as never);
    const from = bob.messages.length;
    const tasks = await waitFor(() => {
      const t = bob.messages.slice(from).flatMap((m) => (m.type === "tasks" ? m.tasks : [])).filter((x) => x.jobId === id);
      return t.length === chunks ? t : undefined;
    }, 10_000, "bob's tasks");
    const answer = (input: unknown) => {
      const samples = (input as { samples: number }).samples;
      return { inside: Math.round(samples * 0.785), samples };
    };
    bob.send({ type: "results", results: tasks.map((t) => ({ taskId: t.taskId, output: answer(t.input) })) });
    await bob.next("ack", from);
    return { api, id };
  }

  it("says how many results wait, to the job's owner and to the volunteer", async () => {
    const { api, id } = await waitingJob(4);
    const job = await waitFor(async () => {
      const j = await api.jobs.get.query({ id });
      return j.progress.waiting ? j : undefined;
    }, 5000, "the wait to be reported");
    expect(job.progress.waiting).toEqual({ units: 4, results: 4 });
    expect(job.results.pending).toBe(4);
    // Nothing computes it: it is queued, with no throughput and no ETA to show.
    expect(job).toMatchObject({ state: "running", status: "queued", progress: { running: 0, throughput: null, etaSeconds: null } });
    const told = await bob.next("waiting", 0, 5000);
    expect(told.results).toBeGreaterThanOrEqual(4);
    const cli = await runCli(["job", id, "--url", srv.url], { TABGRID_API_KEY: alice.apiKey });
    expect(cli.stdout).toContain("4 results wait for a volunteer from another account to confirm them.");
    expect(cli.stdout).toContain(`tabgrid job ${id} --accept-unconfirmed`);
    // Only the owner may end the wait.
    const bobsApi = trpc(srv.url, (await createUserWithKey(srv.deps, "mallory@example.com")).apiKey);
    await expect(bobsApi.jobs.acceptUnconfirmed.mutate({ id })).rejects.toThrow(/No job/);

    const accepted = await runCli(["job", id, "--accept-unconfirmed", "--json", "--url", srv.url], { TABGRID_API_KEY: alice.apiKey });
    expect(accepted.code).toBe(0);
    expect(JSON.parse(accepted.stdout)).toMatchObject({ status: "completed", done: 4, results: { valid: 4, pending: 0 } });
    // Bob did the work and the owner took it: he is paid for each unit; the rest is refunded.
    await srv.deps.coordinator.drain();
    const { db } = srv.deps;
    const paid = await db.result.findMany({ where: { jobId: id }, select: { state: true, paid: true } });
    for (const r of paid) expect(r.state).toBe("valid");
    expect(paid.every((r) => r.paid > 0)).toBe(true);
    expect(await balanceOf(db, escrowAccount(id))).toBe(0);
    await expectSettledJob(db, id);
    await waitFor(() => bob.messages.slice(-5).some((m) => m.type === "waiting" && m.results === 0), 5000, "bob told nothing waits");
  });

  it("refuses bad or foreign requests to end the wait, changing nothing", async () => {
    const { api, id } = await waitingJob(2);
    const before = await srv.deps.db.job.findUniqueOrThrow({ where: { id }, select: { replicas: true, quorum: true, state: true } });
    const reason = (p: Promise<unknown>) => p.then(() => "accepted", (e: Error) => e.message);
    expect(await reason(api.jobs.setReplication.mutate({ id, replicas: 3 }))).toBe("A running job's replication can only be lowered (it has 2 copies per unit).");
    expect(await reason(api.jobs.setReplication.mutate({ id, replicas: 0 }))).toMatch(/replicas/);
    expect(await reason(api.jobs.setReplication.mutate({ id, replicas: 1.5 } as never))).toMatch(/replicas/);
    expect(await reason(api.jobs.setReplication.mutate({ id: "nope", replicas: 1 }))).toBe("No job nope.");
    // Its escrow pays two results a unit: a quorum of three would be paid partly out of nothing.
    const three = await api.jobs.submit.mutate({ kernel: "pi", chunks: 2, replication: { replicas: 3, quorum: 2, adaptive: false } } as never);
    expect(await reason(api.jobs.setReplication.mutate({ id: three.id, replicas: 3, quorum: 3 }))).toBe("A running job's quorum can only be lowered (it has a quorum of 2).");
    expect(await srv.deps.db.job.findUniqueOrThrow({ where: { id: three.id }, select: { replicas: true, quorum: true } })).toEqual({ replicas: 3, quorum: 2 });
    await api.jobs.cancel.mutate({ id: three.id });
    // An admin may look at anyone's job, but not decide for its owner.
    const admin = await createUserWithKey(srv.deps, "second-admin@example.com");
    await srv.deps.db.user.update({ where: { id: admin.user.id }, data: { role: "admin" } });
    const adminKey = admin.apiKey;
    expect((await trpc(srv.url, adminKey).jobs.get.query({ id })).id).toBe(id);
    expect(await reason(trpc(srv.url, adminKey).jobs.acceptUnconfirmed.mutate({ id }))).toBe("Only the job's owner may accept its unconfirmed results.");
    expect(await reason(trpc(srv.url, adminKey).jobs.setReplication.mutate({ id, replicas: 1 }))).toBe("Only the job's owner may change its replication.");
    expect(await srv.deps.db.job.findUniqueOrThrow({ where: { id }, select: { replicas: true, quorum: true, state: true } })).toEqual(before);
    expect((await api.jobs.get.query({ id })).results).toMatchObject({ valid: 0, pending: 2 });
    // The CLI says what is wrong with a bad number before asking the server.
    const cli = await runCli(["job", id, "--replicas", "0", "--url", srv.url], { TABGRID_API_KEY: alice.apiKey });
    expect(cli.code).toBe(2);
    expect(cli.stderr).toMatch(/--replicas/);
    await api.jobs.cancel.mutate({ id });
  });

  it("ends when the owner lowers the replication of the running job", async () => {
    const { id } = await waitingJob(3);
    await waitFor(async () => (await trpc(srv.url, alice.apiKey).jobs.get.query({ id })).progress.waiting, 5000, "the wait");
    const bad = await runCli(["job", id, "--replicas", "1", "--quorum", "2", "--url", srv.url], { TABGRID_API_KEY: alice.apiKey });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/quorum \(2\) cannot exceed the copies per unit \(1\)/);
    const lowered = await runCli(["job", id, "--replicas", "1", "--json", "--url", srv.url], { TABGRID_API_KEY: alice.apiKey });
    expect(lowered.code).toBe(0);
    expect(JSON.parse(lowered.stdout)).toMatchObject({ status: "completed", done: 3, replication: { replicas: 1, quorum: 1 } });
    await expectSettledJob(srv.deps.db, id);
  });
});

describe("a program that always throws", () => {
  let srv: TestServer;
  let volunteer: CliVolunteer | undefined;
  beforeAll(async () => {
    srv = await startTestServer({ ERROR_WAIT_SECONDS: "1" });
  });
  afterAll(async () => {
    await volunteer?.stop();
    await srv?.close();
  });

  it("fails its job with the program's own message once no other volunteer may try, and refunds the hold", async () => {
    const { db, env } = srv.deps;
    const me = await createUserWithKey(srv.deps, "thrower@example.com");
    volunteer = startCliVolunteer(srv.url, 1, { dir: srv.dir });
    await waitForVolunteer(srv.deps, volunteer.identity.volunteerId);
    const source = "export function run(input) { throw new Error(`cannot handle item ${input}: the frobnicator is missing`); }\n";
    const res = await fetch(`${srv.url}/api/programs?name=thrower.js`, { method: "POST", headers: { authorization: `Bearer ${me.apiKey}` }, body: source });
    expect(res.status).toBe(201);
    const { hash } = await res.json();
    const api = trpc(srv.url, me.apiKey);
    const { id } = await api.jobs.submit.mutate({ kernel: "program", program: hash, input: { mode: "json", items: [1, 2] }, chunks: 2 } as never);
    const job = await waitFor(async () => {
      const j = await api.jobs.get.query({ id });
      return j.state !== "running" ? j : undefined;
    }, 30_000, "the job to fail");
    expect(job.state).toBe("failed");
    expect(job.error).toMatch(/^Error: cannot handle item \d: the frobnicator is missing.* \(unit \d failed on 1 host\), and no other volunteer online may take it$/);
    const cli = JSON.parse((await runCli(["job", id, "--json", "--url", srv.url], { TABGRID_API_KEY: me.apiKey })).stdout);
    expect(cli).toMatchObject({ status: "failed", error: job.error });
    const list = await api.jobs.list.query();
    expect(list.find((j) => j.id === id)).toMatchObject({ status: "failed", error: job.error });
    expect(await balanceOf(db, escrowAccount(id))).toBe(0);
    expect(await balanceOf(db, userAccount(me.user.id))).toBe(Math.round(env.STARTER_CREDITS * MILLI));
  });
});
