import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUserWithKey, runCli, startCliVolunteer, startTestServer, waitFor, type CliVolunteer, type TestServer } from "../helpers/server";
import { RawVolunteer, trpc, trpcError } from "../helpers/clients";
import { auditLedger } from "../../server/services/credits/ledger";
import { measureEndedJobs, measureJobOutputs } from "../../server/services/programs/outputStorage";

// Outputs were stored whatever their size: a hundred units answering 4 MB each grew the
// database by 781 MB in 32 s for a tenth of a credit. A unit's output is now bounded
// (UNIT_OUTPUT_BYTES), an account's jobs' outputs count against ACCOUNT_STORAGE_BYTES (a job
// that takes it past fails, and no program job is taken while it is full), and deleting ended
// jobs makes room again.
describe("what jobs' outputs may store", () => {
  let srv: TestServer;
  let volunteer: CliVolunteer;
  const QUOTA = 256 * 1024;
  const UNIT_CAP = 64 * 1024;

  beforeAll(async () => {
    // A unit that errored on the only volunteer fails its job after 1 s, not 15.
    srv = await startTestServer({ ACCOUNT_STORAGE_BYTES: String(QUOTA), UNIT_OUTPUT_BYTES: String(UNIT_CAP), ERROR_WAIT_SECONDS: "1" });
    volunteer = startCliVolunteer(srv.url, 2, { dir: srv.dir });
    await waitFor(() => srv.deps.coordinator.volunteers().length === 1, 30_000, "a volunteer");
  }, 60_000);
  afterAll(async () => {
    await volunteer?.stop();
    await srv?.close();
  });

  /** A program whose unit x answers `chars` characters of padding. */
  const upload = async (apiKey: string, chars: number) => {
    const res = await fetch(`${srv.url}/api/programs?name=pad.js`, {
      method: "POST", headers: { authorization: `Bearer ${apiKey}` },
      body: `export function run(x) { return { x, pad: "y".repeat(${chars}) }; }\n`,
    });
    expect(res.status).toBe(201);
    return ((await res.json()) as { hash: string }).hash;
  };
  const submit = (apiKey: string, program: string, units: number) =>
    trpc(srv.url, apiKey).jobs.submit.mutate({
      kernel: "program", program, input: { mode: "range", start: 0, end: units }, chunks: units,
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never);
  const ended = (apiKey: string, id: string) =>
    waitFor(async () => {
      const j = await trpc(srv.url, apiKey).jobs.get.query({ id });
      return j.state !== "running" ? j : undefined;
    }, 60_000, `job ${id} to end`);
  const largestStored = async (jobId: string) => {
    const rows = await srv.deps.db.result.findMany({ where: { jobId }, select: { output: true } });
    return Math.max(0, ...rows.map((r) => (r.output ? Buffer.byteLength(r.output) : 0)));
  };

  it("refuses a unit's output over UNIT_OUTPUT_BYTES as that task's error, and stores none of it", async () => {
    const user = await createUserWithKey(srv.deps, "big-unit@example.com");
    const job = await ended(user.apiKey, (await submit(user.apiKey, await upload(user.apiKey, UNIT_CAP + 10), 2)).id);
    expect(job.state).toBe("failed");
    expect(job.error).toMatch(/output of [\d.]+ KiB is over the 64 KiB a unit may store/);
    expect(await largestStored(job.id)).toBe(0);
  });

  it("fails a job whose outputs take the account past its storage, refuses the next while full, and takes one again once jobs are deleted", async () => {
    const user = await createUserWithKey(srv.deps, "many-units@example.com");
    const api = trpc(srv.url, user.apiKey);
    const program = await upload(user.apiKey, 30_000);
    // 100 units of 30 kB each would store 6 MB (each output twice); the account may keep 256 KiB.
    const big = await ended(user.apiKey, (await submit(user.apiKey, program, 100)).id);
    expect(big.state).toBe("failed");
    expect(big.error).toMatch(/over the 256 KiB an account may keep/);
    await measureEndedJobs(srv.deps);
    const row = await srv.deps.db.job.findUniqueOrThrow({ where: { id: big.id }, select: { outputBytes: true } });
    // Stopped near the bound: past it by what came while the bound was read and the job stopped.
    expect(row.outputBytes).toBeGreaterThan(QUOTA / 2);
    expect(row.outputBytes).toBeLessThan(3 * QUOTA);
    expect(row.outputBytes).toBe(await measureJobOutputs(srv.deps, big.id));
    expect((await api.files.list.query()).outputBytes).toBe(row.outputBytes);

    // Full (or nearly): a job that fills it once more, then the account is refused.
    if (row.outputBytes < QUOTA) {
      const more = await ended(user.apiKey, (await submit(user.apiKey, program, 100)).id);
      expect(more.state).toBe("failed");
      await measureEndedJobs(srv.deps);
    }
    expect(await trpcError(submit(user.apiKey, program, 1))).toMatchObject({
      code: "PAYLOAD_TOO_LARGE", message: expect.stringMatching(/Your jobs' outputs take .* of your 256 KiB\. Delete jobs you no longer need/),
    });

    // Deleting: not a running job, not someone else's; one's own ended jobs, rows and all.
    const other = await createUserWithKey(srv.deps, "other@example.com");
    expect(await trpcError(trpc(srv.url, other.apiKey).jobs.delete.mutate({ id: big.id }))).toMatchObject({ code: "NOT_FOUND" });
    const board = () => trpc(srv.url).leaderboard.get.query({ window: "all", by: "validated" }).then((b) => b.volunteers.map((v) => [v.name, v.validated, v.credits]));
    const boardBefore = await board();
    const mine = await api.jobs.list.query();
    for (const j of mine) {
      const out = await runCli(["job", j.id, "--delete", "--url", srv.url, "--api-key", user.apiKey]);
      expect(out.code, out.stderr).toBe(0);
      expect(out.stdout).toContain(`job ${j.id} deleted`);
    }
    // Its outputs are gone; its results stay, emptied: they are the volunteers' record.
    const results = await srv.deps.db.result.findMany({ where: { jobId: big.id }, select: { output: true, state: true } });
    expect(results.length).toBeGreaterThan(0);
    expect(results.filter((r) => r.output !== null)).toEqual([]);
    expect(await srv.deps.db.workUnit.count({ where: { jobId: big.id, output: { not: null } } })).toBe(0);
    expect(await trpcError(api.jobs.get.query({ id: big.id }))).toMatchObject({ code: "NOT_FOUND" });
    expect(await trpcError(api.jobs.delete.mutate({ id: big.id }))).toMatchObject({ code: "NOT_FOUND" });
    expect(await api.jobs.list.query()).toEqual([]);
    // The volunteers who computed them keep their standing.
    expect(await board()).toEqual(boardBefore);
    expect((await api.files.list.query()).outputBytes).toBe(0);
    // The books still balance: the ledger keeps what moved, by job id.
    expect(await auditLedger(srv.deps.db)).toMatchObject({ ok: true });

    // Room again: a small job completes, and is measured at what it stores.
    const small = await ended(user.apiKey, (await submit(user.apiKey, program, 2)).id);
    expect(small.state).toBe("completed");
    await measureEndedJobs(srv.deps);
    const measured = (await srv.deps.db.job.findUniqueOrThrow({ where: { id: small.id }, select: { outputBytes: true } })).outputBytes;
    // Two results, two units' outputs and the merged result holding both: six outputs of about 30 kB.
    expect(measured).toBeGreaterThan(6 * 30_000);
    expect(measured).toBeLessThan(6 * 30_100);
    // An iterative job's rounds keep their states too (a step may leave megabytes each round).
    await srv.deps.db.jobRound.create({ data: { jobId: small.id, round: 1, state: JSON.stringify("s".repeat(10_000)), next: JSON.stringify("€".repeat(1000)) } });
    expect(await measureJobOutputs(srv.deps, small.id)).toBe(measured + 10_002 + 3_002);
  }, 180_000);

  it("measures the account's ended jobs before it takes the next, however soon it comes", async () => {
    const user = await createUserWithKey(srv.deps, "back-to-back@example.com");
    const program = await upload(user.apiKey, 40_000);
    const outputsOf = async (id: string) => (await srv.deps.db.job.findUniqueOrThrow({ where: { id }, select: { outputBytes: true } })).outputBytes;
    // Two results, two units' outputs and their merged result: about 240 kB of the 256 KiB.
    const first = await ended(user.apiKey, (await submit(user.apiKey, program, 2)).id);
    expect(first.state).toBe("completed");
    // Taken at once, and the first measured before it was (not within the collector's 30 s).
    const second = await ended(user.apiKey, (await submit(user.apiKey, program, 1)).id);
    expect(await outputsOf(first.id)).toBeGreaterThan(6 * 40_000);
    // Its unit's 80 kB did not fit: it failed, keeping them, and the next is refused for them.
    expect(second).toMatchObject({ state: "failed", error: expect.stringMatching(/over the 256 KiB an account may keep/) });
    expect(await trpcError(submit(user.apiKey, program, 1))).toMatchObject({ code: "PAYLOAD_TOO_LARGE" });
    expect(await outputsOf(second.id)).toBeGreaterThan(2 * 40_000);
  });

  it("removes a deleted job's input blobs with it", async () => {
    const user = await createUserWithKey(srv.deps, "inputs-deleted@example.com");
    const program = await upload(user.apiKey, 10);
    // JSON items over 16 KiB are stored as blobs.
    const items = [`a${"x".repeat(20_000)}`, `b${"x".repeat(20_000)}`];
    const { id } = await trpc(srv.url, user.apiKey).jobs.submit.mutate({
      kernel: "program", program, input: { mode: "json", items }, replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never);
    expect((await ended(user.apiKey, id)).state).toBe("completed");
    const blobs = (await srv.deps.db.workUnit.findMany({ where: { jobId: id }, select: { input: true } })).map((u) => (JSON.parse(u.input) as { blob: string }).blob);
    expect(blobs).toHaveLength(2);
    for (const h of blobs) await srv.deps.blobs.get(h);
    await trpc(srv.url, user.apiKey).jobs.delete.mutate({ id });
    for (const h of blobs) await expect(srv.deps.blobs.get(h)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("counts a merged result before it is stored: jobs whose reduce answers much, ending together, stop at the budget", async () => {
    const user = await createUserWithKey(srv.deps, "reducer@example.com");
    const res = await fetch(`${srv.url}/api/programs?name=fat-reduce.js`, {
      method: "POST", headers: { authorization: `Bearer ${user.apiKey}` },
      body: "export function run(x) { return 1; }\nexport function reduce(outputs) { return 'r'.repeat(100000); }\n",
    });
    const program = ((await res.json()) as { hash: string }).hash;
    // Four one-unit jobs, each merging into 100 kB: two fit the 256 KiB, the others are refused.
    const jobs = await Promise.all(Array.from({ length: 4 }, () => trpc(srv.url, user.apiKey).jobs.submit.mutate({
      kernel: "program", program, input: { mode: "range", start: 0, end: 1 }, chunks: 1, merge: "reduce",
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never)));
    const ends = await Promise.all(jobs.map((j) => ended(user.apiKey, j.id)));
    const completed = ends.filter((j) => j.state === "completed");
    expect(completed.length).toBeGreaterThanOrEqual(1);
    expect(completed.length).toBeLessThanOrEqual(2);
    for (const j of ends.filter((e) => e.state !== "completed")) {
      expect(j.error).toMatch(/its merged result of 98 KiB would take the account's stored outputs to .*, over the 256 KiB an account may keep/);
    }
    await measureEndedJobs(srv.deps);
    expect((await trpc(srv.url, user.apiKey).files.list.query()).outputBytes).toBeLessThanOrEqual(QUOTA);
  });

  it("counts a job's params with what it keeps, and deleting it drops them", async () => {
    const user = await createUserWithKey(srv.deps, "params@example.com");
    const api = trpc(srv.url, user.apiKey);
    const program = await upload(user.apiKey, 10);
    await volunteer.stop();
    const { id } = await api.jobs.submit.mutate({
      kernel: "program", program, input: { mode: "range", start: 0, end: 1 }, chunks: 1, params: { blob: "p".repeat(100_000) },
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never);
    await api.jobs.cancel.mutate({ id });
    await measureEndedJobs(srv.deps);
    expect((await api.files.list.query()).outputBytes).toBeGreaterThan(100_000);
    await api.jobs.delete.mutate({ id });
    const row = await srv.deps.db.job.findUniqueOrThrow({ where: { id }, select: { params: true } });
    expect(row.params.length).toBeLessThan(1000);
    expect(JSON.parse(row.params)).toMatchObject({ params: {}, program: { hash: program } });
    expect((await api.files.list.query()).outputBytes).toBe(0);
  });

  it("deletes no running job", async () => {
    const user = await createUserWithKey(srv.deps, "running@example.com");
    const api = trpc(srv.url, user.apiKey);
    await volunteer.stop();
    const { id } = await submit(user.apiKey, await upload(user.apiKey, 10), 1);
    expect(await trpcError(api.jobs.delete.mutate({ id }))).toMatchObject({ code: "CONFLICT", message: expect.stringMatching(/still running: cancel it first/) });
    await api.jobs.cancel.mutate({ id });
    expect(await api.jobs.delete.mutate({ id })).toEqual({ id, deleted: true });
  });
});

// A volunteer's answers counted against the job's owner as they came: 128 answers of 4 MiB to a
// victim's units failed its job and filled its account, whatever its replication. Now a job
// bounds its own outputs (outputLimitBytes, 1 MiB unless it says), a unit's bytes count once it
// is decided, and the outvoted answers are emptied once the job has ended.
describe("a stranger's answers and the owner's storage", () => {
  let srv: TestServer;
  const QUOTA = 256 * 1024;
  const sockets: RawVolunteer[] = [];

  beforeAll(async () => {
    srv = await startTestServer({ ACCOUNT_STORAGE_BYTES: String(QUOTA), SPOT_CHECKS: "off" });
  }, 60_000);
  afterAll(async () => {
    for (const s of sockets) if (!s.closed) await s.close().catch(() => {});
    await srv?.close();
  });
  const welcomed = async (threads: number) => {
    const v = await RawVolunteer.welcomed(srv.url, threads);
    sockets.push(v);
    return v;
  };

  it("refuses an answer over the job's own bound, and leaves the job running on answers of garbage until its units are decided", async () => {
    const owner = await createUserWithKey(srv.deps, "victim@example.com");
    const api = trpc(srv.url, owner.apiKey);
    const res = await fetch(`${srv.url}/api/programs?name=echo.js`, {
      method: "POST", headers: { authorization: `Bearer ${owner.apiKey}` }, body: "export function run(x) { return x; }\n",
    });
    const program = ((await res.json()) as { hash: string }).hash;
    const items = [1, 2, 3, 4, 5, 6];
    const job = (extra: Record<string, unknown>) => ({
      kernel: "program", program, input: { mode: "json", items }, replication: { replicas: 2, adaptive: false }, cpuSecondsPerUnit: 0.001, ...extra,
    }) as never;
    // The bound is the server's at most, and a program job's only.
    expect(await trpcError(api.jobs.submit.mutate(job({ outputLimitBytes: 5 * 1024 * 1024 })))).toMatchObject({
      code: "BAD_REQUEST", message: expect.stringMatching(/outputLimitBytes may be at most 4194304 \(4 MiB,/),
    });
    expect(await trpcError(api.jobs.submit.mutate({ kernel: "pi", chunks: 2, outputLimitBytes: 1000 } as never))).toMatchObject({
      code: "BAD_REQUEST", message: expect.stringMatching(/outputLimitBytes applies to an uploaded program's job/),
    });

    const griefer = await welcomed(8);
    const { id } = await api.jobs.submit.mutate(job({ outputLimitBytes: 100_000 }));
    const mine = () => griefer.tasks().filter((t) => t.jobId === id);
    await waitFor(() => mine().length >= items.length, 5000, "the griefer to hold a replica of every unit");
    const [first, ...rest] = mine();
    const garbage = (n: number, i: number) => JSON.stringify(`${i}${"g".repeat(n)}`);
    const over = await griefer.request(`{"type":"results","results":[{"taskId":${JSON.stringify(first.taskId)},"output":${garbage(150_000, 0)}}]}`, "ack");
    expect(over.rejected).toEqual([{ taskId: first.taskId, reason: expect.stringMatching(/^output of 150,003 bytes is over the job's limit of 100,000 bytes a unit \(outputLimitBytes\)$/) }]);
    // 5 answers of 90 kB: counted twice as they came, 900 kB against 256 KiB failed the job.
    const ack = await griefer.request(`{"type":"results","results":[${rest.map((t, i) => `{"taskId":${JSON.stringify(t.taskId)},"output":${garbage(90_000, i + 1)}}`).join(",")}]}`, "ack");
    expect(ack.accepted).toHaveLength(rest.length);
    await srv.deps.coordinator.drain();
    expect((await api.jobs.get.query({ id })).state).toBe("running");

    // Two honest volunteers outvote it, unit by unit.
    const honest = [await welcomed(4), await welcomed(4)];
    const done = await waitFor(async () => {
      for (const v of honest) v.answerNew((t) => ({ taskId: t.taskId, output: (t.input as { value: number }).value }));
      const j = await api.jobs.get.query({ id });
      return j.state !== "running" ? j : undefined;
    }, 30_000, "the honest volunteers to decide every unit");
    expect(done).toMatchObject({ state: "completed" });
    expect(await api.jobs.result.query({ id })).toEqual(items);

    // Measured once it has ended: the outvoted answers are emptied, and the job keeps its own outputs only.
    await measureEndedJobs(srv.deps);
    const rows = await srv.deps.db.result.findMany({ where: { id: { in: rest.map((t) => t.taskId) } }, select: { state: true, output: true } });
    expect(rows).toEqual(rest.map(() => ({ state: "invalid", output: null })));
    const { outputBytes } = await srv.deps.db.job.findUniqueOrThrow({ where: { id }, select: { outputBytes: true } });
    expect(outputBytes).toBe(await measureJobOutputs(srv.deps, id));
    expect(outputBytes).toBeGreaterThan(0);
    // Six outputs of one digit, twice each, and the job's params.
    expect(outputBytes).toBeLessThan(600);
    expect(await auditLedger(srv.deps.db)).toMatchObject({ ok: true });
  }, 90_000);

  it("keeps another job's input when a deleted job's merged result had the same bytes", async () => {
    const [victim, mallory] = [await createUserWithKey(srv.deps, "reader@example.com"), await createUserWithKey(srv.deps, "copycat@example.com")];
    const upload = async (apiKey: string, body: string) => {
      const r = await fetch(`${srv.url}/api/programs?name=p.js`, { method: "POST", headers: { authorization: `Bearer ${apiKey}` }, body });
      return ((await r.json()) as { hash: string }).hash;
    };
    // A JSON item over 16 KiB is stored as a blob named by its bytes, as a merged result over 64 KiB is.
    const item = Array.from({ length: 20_000 }, (_, i) => i);
    const job = (program: string, items: unknown[], extra: Record<string, unknown> = {}) => ({
      kernel: "program", program, input: { mode: "json", items }, replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001, ...extra,
    }) as never;
    const copy = await upload(mallory.apiKey, `export function run(x) { return x; }\nexport function reduce() { return Array.from({ length: 20000 }, (_, i) => i); }\n`);
    // The only volunteer: the last test's sockets go.
    for (const v of sockets) if (!v.closed) await v.close();
    const worker = await welcomed(4);
    const { id } = await trpc(srv.url, mallory.apiKey).jobs.submit.mutate(job(copy, [1], { merge: "reduce" }));
    const answered = new Set<string>();
    const merged = await waitFor(async () => {
      const fresh = worker.tasks().filter((t) => t.jobId === id && !answered.has(t.taskId));
      for (const t of fresh) answered.add(t.taskId);
      if (fresh.length) worker.send({ type: "results", results: fresh.map((t) => ({ taskId: t.taskId, output: 1 })) });
      return (await srv.deps.db.job.findUnique({ where: { id }, select: { state: true, resultBlob: true } }))?.resultBlob ?? undefined;
    }, 20_000, "the copy's merged result");
    // Then a job reads the same bytes as its input (its tasks wait: nobody answers them).
    const waiting = await trpc(srv.url, victim.apiKey).jobs.submit.mutate(job(await upload(victim.apiKey, "export function run(x) { return x.length; }\n"), [item, [1]]));
    const blob = (await srv.deps.db.workUnit.findMany({ where: { jobId: waiting.id }, select: { input: true } }))
      .map((u) => (JSON.parse(u.input) as { blob?: string }).blob).find(Boolean)!;
    expect(merged).toBe(blob);
    expect((await trpc(srv.url, victim.apiKey).jobs.get.query({ id: waiting.id })).state).toBe("running");
    await trpc(srv.url, mallory.apiKey).jobs.delete.mutate({ id });
    // The waiting job still reads its input.
    expect(JSON.parse((await srv.deps.blobs.get(blob)).toString("utf8"))).toEqual(item);
    await trpc(srv.url, victim.apiKey).jobs.cancel.mutate({ id: waiting.id });
  }, 60_000);
});
