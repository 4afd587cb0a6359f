import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { referenceRun } from "../../bench/lib/referenceRun";
import { createApiKey } from "../../server/auth/apiKeys";
import { auditLedger } from "../../server/services/credits/ledger";
import { createUser } from "../../server/services/users/users";
import { createPrisma, type Db } from "../../server/store/prisma";
// @ts-expect-error: a plain ES module of the examples, without types
import { makeClassification } from "../../examples/js/make-classification.mjs";
import { trpc } from "../helpers/clients";
import { repoRoot, startCliVolunteer, waitFor, type CliVolunteer } from "../helpers/server";
import { freePort, startServerProcess, tempDatabase, type ServerProcess } from "../helpers/serverProcess";
import { testEngine } from "../helpers/testDb";

// An iterative program's rounds step from memory, and the step's write joins the group commit
// behind the round's results while the next round is already out. The server dies with
// SIGKILL just as a round begins, twice: the job must resume from what was committed and end
// with the very weights of a single-process run, each round recorded once.

const PROGRAM = path.join(repoRoot, "examples", "js", "logreg.js");
const CSV: string = makeClassification({ rows: 3000, features: 5, seed: 9 });
const SHARDS = 6;
const ROUNDS = 40;
const PARAMS = { lr: 0.8 };

describe("an iterative program across server kills", () => {
  let tmp: Awaited<ReturnType<typeof tempDatabase>>;
  let db: Db;
  const servers: ServerProcess[] = [];
  let volunteers: CliVolunteer[] = [];

  beforeAll(async () => {
    tmp = await tempDatabase();
    db = createPrisma(tmp.databaseUrl);
    // SQLite: this client keeps the file open while servers come and go, in the server's mode.
    if (testEngine() === "sqlite") await db.$executeRawUnsafe("PRAGMA journal_mode = WAL");
  });
  afterAll(async () => {
    await Promise.all(volunteers.map((v) => v.stop()));
    for (const s of servers) await s.stop();
    await db?.$disconnect();
    await tmp?.remove();
  });

  it("resumes from the committed rounds and trains to the weights of one process", async () => {
    const consumer = await createUser(db, { email: "trainer@example.com", password: "correct horse battery" }, 100_000);
    const { key: apiKey } = await createApiKey(db, consumer.id, "server kill training");
    const port = await freePort();
    const start = async () => {
      const s = await startServerProcess({ port, databaseUrl: tmp.databaseUrl, dataDir: tmp.dir });
      servers.push(s);
      return s;
    };
    let server = await start();
    const post = async (kind: string, body: string, name: string) => {
      const res = await fetch(`${server.url}/api/${kind}?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${apiKey}` }, body });
      expect(res.status, await res.clone().text()).toBe(201);
      return ((await res.json()) as { hash: string }).hash;
    };
    const program = await post("programs", fs.readFileSync(PROGRAM, "utf8"), "logreg.js");
    const data = await post("data", CSV, "data.csv");
    volunteers = [0, 1, 2].map(() => startCliVolunteer(server.url, 1, { dir: tmp.dir }));
    const { id } = await trpc(server.url, apiKey).jobs.submit.mutate({
      kernel: "program", program, input: { mode: "csv", data }, chunks: SHARDS, merge: "trimmed-mean", rounds: ROUNDS, params: PARAMS,
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never);

    const latestRound = async () => (await db.jobRound.findFirst({ where: { jobId: id }, orderBy: { round: "desc" }, select: { round: true } }))?.round ?? 0;
    for (const after of [4, 12]) {
      // Killed the moment a new round is stored, while its units are out and the previous step's write may be in flight.
      const seen = await latestRound();
      await waitFor(async () => (await latestRound()) > Math.max(seen, after), 60_000, `round ${after + 1}`, 1);
      expect((await server.kill9()).signal).toBe("SIGKILL");
      server = await start();
    }
    await waitFor(async () => (await db.job.findUnique({ where: { id }, select: { state: true } }))?.state !== "running", 90_000, "the job to end", 50);

    const api = trpc(server.url, apiKey);
    const job = await api.jobs.get.query({ id });
    expect(job.state, job.error ?? "").toBe("completed");
    const reference = await referenceRun({ program: PROGRAM, csv: CSV, shards: SHARDS, merge: "trimmed-mean", params: PARAMS, rounds: ROUNDS });
    expect(await api.jobs.result.query({ id })).toEqual(reference.result);
    // Every round once, each finished, with the reference's loss.
    const rounds = await db.jobRound.findMany({ where: { jobId: id }, orderBy: { round: "asc" } });
    expect(rounds.map((r) => r.round)).toEqual(Array.from({ length: ROUNDS }, (_, i) => i + 1));
    expect(rounds.every((r) => r.finishedAt !== null)).toBe(true);
    expect(job.rounds.map((r) => r.stats)).toEqual(reference.rounds.map((r) => r.metrics));
    // Each unit of each round validated once; nothing paid twice.
    const units = await db.workUnit.findMany({ where: { jobId: id }, select: { round: true, done: true } });
    expect(units).toHaveLength(ROUNDS * SHARDS);
    expect(units.every((u) => u.done)).toBe(true);
    const valid = await db.result.groupBy({ by: ["unitId"], where: { jobId: id, state: "valid" }, _count: { _all: true } });
    expect(valid.every((v) => v._count._all === 1)).toBe(true);
    expect(await auditLedger(db)).toMatchObject({ ok: true, total: 0 });
  }, 180_000);
});
