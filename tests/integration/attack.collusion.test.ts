import { isDeepStrictEqual } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { auditLedger, balanceOf } from "../../server/services/credits/ledger";
import { MILLI, userAccount } from "../../server/services/credits/accounts";
import { getKernel } from "../../worker/kernels";
import { trpc } from "../helpers/clients";
import { Colluder } from "../helpers/colluders";
import { computeLocally } from "../helpers/fleet";
import {
  createUserWithKey, startCliVolunteer, startTestServer, waitFor, waitForVolunteer, type CliVolunteer, type TestServer,
} from "../helpers/server";

// Issue 11, part 2: colluding volunteers must not win. Six honest hosts (real `tabgrid
// volunteer` processes, one thread each, six accounts) and two colluders (raw sockets, two
// more accounts: 25% of the hosts) that claim 4 threads and answer every pi unit in the same
// event-loop turn with the same fake, round(samples·π/4) points inside. R = 2, Q = 2,
// adaptive replication left at its default. Over 1,000 units the defences must give:
//   - 0 wrong units in the final outputs (and the job's result is the honest one);
//   - every colluder host and account banned within its first 50 fakes;
//   - 0 credits left with the colluders (what they were paid is taken back);
//   - at most 2.5 results per unit on average.
// The same with sleepers, honest for their first 100 results before they start faking.
// Each scenario prints one summary line (prefixed "[attack.collusion]") with every figure.

const UNITS = 1000;
const SAMPLES_PER_UNIT = 100_000; // ~0.5 ms of compute a unit: dispatch, not CPU, sets the pace
const PARAMS = { samples: UNITS * SAMPLES_PER_UNIT, seed: 20_251_111 };
const REPLICATION = { replicas: 2, quorum: 2 };
const HONEST_HOSTS = 6;
const COLLUDERS = 2;
const COLLUDER_THREADS = 4;
const SLEEP_RESULTS = 100;
const BAN_WITHIN = 50;
const MAX_REDUNDANCY = 2.5;
const SCENARIO_TIMEOUT_MS = 120_000;

interface Scenario {
  name: string;
  /** Results each colluder computes honestly before faking. */
  honestFirst: number;
}

// Everything started, so that afterAll can stop what a failed scenario left behind.
const servers = new Set<TestServer>();
const processes = new Set<CliVolunteer>();
const sockets = new Set<Colluder>();

async function cleanUp() {
  await Promise.all([...sockets].map((c) => c.close().catch(() => {})));
  sockets.clear();
  await Promise.all([...processes].map((p) => p.stop()));
  processes.clear();
  for (const s of servers) await s.close();
  servers.clear();
}

let expected: ReturnType<typeof computeLocally> | undefined;
/** The honest outputs, once for both scenarios, and each unit's honest output by its seed. */
function honestAnswers() {
  expected ??= computeLocally("pi", PARAMS, UNITS);
  const kernel = getKernel("pi")!;
  const inputs = kernel.split(kernel.params.parse(PARAMS), UNITS).map((u) => u.input as { seed: number });
  return { ...expected, bySeed: new Map(inputs.map((input, i) => [input.seed, expected!.outputs[i]])) };
}

const fmtMilli = (m: number) => (m / MILLI).toFixed(3);

async function runScenario(sc: Scenario) {
  const t0 = Date.now();
  const truth = honestAnswers();
  const srv = await startTestServer();
  servers.add(srv);
  const { db, coordinator, env } = srv.deps;
  const starter = Math.round(env.STARTER_CREDITS * MILLI);
  await createUserWithKey(srv.deps, "admin@example.com"); // the first account is the admin: not a party here
  const consumer = await createUserWithKey(srv.deps, "consumer@example.com");
  const honestUsers = await Promise.all(Array.from({ length: HONEST_HOSTS }, (_, i) => createUserWithKey(srv.deps, `honest-${i}@example.com`)));
  const cheaterUsers = await Promise.all(Array.from({ length: COLLUDERS }, (_, i) => createUserWithKey(srv.deps, `colluder-${i}@example.com`)));

  // Honest hosts: real CLI processes, one thread each, each signed in to its own account.
  const honest = honestUsers.map((u, i) => {
    const p = startCliVolunteer(srv.url, 1, { dir: srv.dir, apiKey: u.apiKey, name: `honest-${i}` });
    processes.add(p);
    return p;
  });
  const conns = await Promise.all(honest.map((p) => waitForVolunteer(srv.deps, p.identity.volunteerId, 60_000)));
  conns.forEach((c, i) => expect(c.userId, `honest-${i} signed in`).toBe(honestUsers[i].user.id));

  // Colluders: raw sockets, two accounts, claiming 4 threads each.
  const cheaters: Colluder[] = [];
  for (const [i, u] of cheaterUsers.entries()) {
    const c = await Colluder.connect(srv.url, { apiKey: u.apiKey, name: `colluder-${i}`, threads: COLLUDER_THREADS, honestFirst: sc.honestFirst });
    sockets.add(c);
    cheaters.push(c);
    expect(c.welcome).toMatchObject({ signedIn: true, account: userAccount(u.user.id) });
  }
  const tConnected = Date.now();

  const api = trpc(srv.url, consumer.apiKey);
  const { id } = await api.jobs.submit.mutate({ kernel: "pi", chunks: UNITS, params: PARAMS, replication: REPLICATION });
  // A job that does not end in time is reported (state "running") with every other figure,
  // and fails below, rather than hiding the figures behind a timeout.
  let timedOut: string | undefined;
  await waitFor(
    async () => (await db.job.findUnique({ where: { id }, select: { state: true } }))?.state !== "running",
    Math.max(5_000, SCENARIO_TIMEOUT_MS - (Date.now() - t0) - 20_000),
    `job ${id} to end`,
    50,
  ).catch((e: Error) => (timedOut = e.message));
  await coordinator.drain();
  const jobMs = Date.now() - tConnected;

  // ---- figures ---------------------------------------------------------------------------
  const job = await db.job.findUniqueOrThrow({ where: { id }, select: { state: true, error: true, result: true, adaptive: true } });
  const units = await db.workUnit.findMany({ where: { jobId: id }, select: { idx: true, done: true, output: true }, orderBy: { idx: "asc" } });
  const wrongUnits = units.filter((u) => !u.done || u.output === null || !isDeepStrictEqual(JSON.parse(u.output), truth.outputs[u.idx])).length;
  const resultRight = job.result !== null && isDeepStrictEqual(JSON.parse(job.result), truth.result);
  const results = await db.result.findMany({ where: { jobId: id }, select: { volunteerId: true, state: true } });
  const redundancy = results.length / units.length;
  const honestIds = new Set(honest.map((p) => p.identity.volunteerId));
  const honestResults = results.filter((r) => honestIds.has(r.volunteerId));
  const honestPerHost = honest.map((p) => honestResults.filter((r) => r.volunteerId === p.identity.volunteerId).length);

  const now = Date.now();
  const banned = async (key: string) => {
    const rec = await db.reliability.findUnique({ where: { id: key }, select: { bannedUntil: true } });
    return !!rec?.bannedUntil && rec.bannedUntil.getTime() > now;
  };
  const perCheater = await Promise.all(
    cheaters.map(async (c, i) => {
      const account = userAccount(cheaterUsers[i].user.id);
      const entries = await db.ledgerEntry.findMany({ where: { accountId: account }, select: { kind: true, amount: true } });
      const rows = results.filter((r) => r.volunteerId === c.volunteerId);
      return {
        c,
        account,
        hostBanned: await banned(`host:${c.volunteerId}`),
        accountBanned: await banned(account),
        creditsLeft: entries.filter((e) => e.kind !== "grant").reduce((s, e) => s + e.amount, 0),
        paid: entries.filter((e) => e.kind === "payout" && e.amount > 0).reduce((s, e) => s + e.amount, 0),
        clawedBack: -entries.filter((e) => e.kind !== "grant" && e.amount < 0).reduce((s, e) => s + e.amount, 0),
        balance: await balanceOf(db, account),
        valid: rows.filter((r) => r.state === "valid").length,
        invalid: rows.filter((r) => r.state === "invalid").length,
        lucky: c.fakes.filter((f) => isDeepStrictEqual(f.output, truth.bySeed.get((f.input as { seed: number }).seed))).length,
      };
    }),
  );
  const ledger = await auditLedger(db);
  const health = await fetch(`${srv.url}/api/health`).then((r) => r.status, () => 0);
  // The server's own work: units it recomputed (spot-checks and ringers).
  const metrics = await fetch(`${srv.url}/api/metrics`).then((r) => r.text(), () => "");
  const spotChecks = Number(/^tabgrid_spot_checks_total (\S+)$/m.exec(metrics)?.[1] ?? NaN);
  let auditError: string | undefined;
  try {
    coordinator.scheduler.audit();
  } catch (e) {
    auditError = (e as Error).message;
  }

  const cheaterFigures = perCheater
    .map(({ c, hostBanned, accountBanned, creditsLeft, paid, clawedBack, valid, invalid, lucky }) =>
      [
        `${c.name}: sent ${c.sent} (${c.honestSent} honest, ${c.fakeSent} fake, ${lucky} fakes right by chance)`,
        `db ${valid} valid/${invalid} invalid`,
        `host ${hostBanned ? "banned" : "not banned"}, account ${accountBanned ? "banned" : "not banned"}`,
        c.ban ? `ban after ${c.ban.sent} results (${c.ban.fakes} fakes)` : "socket never banned",
        `paid ${fmtMilli(paid)}, taken back ${fmtMilli(clawedBack)}, left ${fmtMilli(creditsLeft)} credits`,
      ].join(", "),
    )
    .join("; ");
  console.log(
    `[attack.collusion] ${sc.name}: ${units.length} units (pi, ${SAMPLES_PER_UNIT} samples each), R=${REPLICATION.replicas} Q=${REPLICATION.quorum} adaptive=${job.adaptive}, ` +
      `${HONEST_HOSTS} honest CLI hosts + ${COLLUDERS} colluders (${Math.round((100 * COLLUDERS) / (COLLUDERS + HONEST_HOSTS))}% of hosts, ${COLLUDER_THREADS} threads, instant identical fakes` +
      `${sc.honestFirst ? `, honest for their first ${sc.honestFirst} results` : ""}) | ` +
      `job ${job.state}${job.error ? ` (${job.error})` : ""}${timedOut ? " (TIMED OUT)" : ""} in ${(jobMs / 1000).toFixed(1)} s, result ${resultRight ? "right" : "WRONG"} | ` +
      `wrong units ${wrongUnits}/${units.length} | ` +
      `redundancy ${redundancy.toFixed(2)} (${results.length} results; honest ${honestResults.length} [${honestPerHost.join(" ")}], colluders ${results.length - honestResults.length}) | ` +
      `server spot-checks and ringers ${spotChecks} (${(spotChecks / units.length).toFixed(2)} per unit) | ` +
      `${cheaterFigures} | ` +
      `ledger ${ledger.ok ? "ok" : `NOT ok ${JSON.stringify(ledger)}`}, scheduler audit ${auditError ? `FAILED: ${auditError}` : "ok"}, health ${health} | ` +
      `scenario ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );

  // ---- the harness did what it claims (these hold whatever the server does) ---------------
  expect(units.length, "units").toBe(UNITS);
  expect(honestResults.length, "the honest CLI volunteers computed").toBeGreaterThan(0);
  for (const { c } of perCheater) {
    expect(c.fakeSent, `${c.name} cheated`).toBeGreaterThan(0);
    expect(c.honestSent, `${c.name} was honest for exactly its first ${sc.honestFirst} results`).toBe(sc.honestFirst);
    expect(c.sent).toBe(c.honestSent + c.fakeSent);
  }

  // ---- the goal ----------------------------------------------------------------------------
  // 1. No wrong unit, the honest result.
  expect.soft(timedOut, "the job ended in time").toBeUndefined();
  expect.soft(job.state, "job state").toBe("completed");
  expect.soft(wrongUnits, "wrong units in the final outputs").toBe(0);
  expect.soft(resultRight, "the job's result is the honest one").toBe(true);
  for (const p of perCheater) {
    // 2. Banned, host and account, within its first BAN_WITHIN fakes.
    expect.soft(p.hostBanned, `${p.c.name}: host banned`).toBe(true);
    expect.soft(p.accountBanned, `${p.c.name}: account banned`).toBe(true);
    expect.soft(p.c.ban, `${p.c.name}: told it is banned on its socket`).toBeDefined();
    expect.soft(p.c.ban?.fakes ?? p.c.fakeSent, `${p.c.name}: fakes sent before the ban`).toBeLessThanOrEqual(BAN_WITHIN);
    // 3. No credits left with it.
    expect.soft(p.creditsLeft, `${p.c.name}: credits left (millicredits beyond the grant)`).toBe(0);
    expect.soft(p.balance, `${p.c.name}: balance`).toBe(starter);
  }
  expect.soft(ledger, "ledger audit").toMatchObject({ ok: true, total: 0 });
  // 4. Redundancy.
  expect.soft(redundancy, "results per unit").toBeLessThanOrEqual(MAX_REDUNDANCY);
  // 5. The server is fine.
  expect.soft(health, "/api/health").toBe(200);
  expect.soft(auditError, "scheduler audit").toBeUndefined();
}

describe("attack: colluding volunteers (issue 11)", () => {
  afterAll(cleanUp, 30_000);

  it(
    "instant colluders: 2 of 8 hosts return identical fakes at once; no wrong unit, banned within 50 results, nothing kept, ≤ 2.5 copies a unit",
    async () => {
      try {
        await runScenario({ name: "instant colluders", honestFirst: 0 });
      } finally {
        await cleanUp();
      }
    },
    SCENARIO_TIMEOUT_MS,
  );

  it(
    `sleepers: the same colluders, honest for their first ${SLEEP_RESULTS} results`,
    async () => {
      try {
        await runScenario({ name: "sleepers", honestFirst: SLEEP_RESULTS });
      } finally {
        await cleanUp();
      }
    },
    SCENARIO_TIMEOUT_MS,
  );
});
