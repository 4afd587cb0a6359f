import { describe, expect, it } from "vitest";
import { Scheduler } from "../../server/scheduler/index.js";
import { DEFAULT_TRUST, groupCredibilities, hostCredibility, spotRate, type TrustPolicy } from "../../server/scheduler/credibility.js";
import type { JobSpec, ReliabilityRecord, ResultOutcome, TaskAssignment, VerifyOutcome } from "../../server/scheduler/index.js";
import { seededRandom } from "../helpers/random";

// Sabotage tolerance in the pure scheduler: credibility, spot-checks held for the server's
// recomputation, probation of newcomers, placement and the verdict of a check.

const T0 = 1_700_000_000_000;
const digest = (o: unknown) => JSON.stringify(o);
const record = (partial: Partial<ReliabilityRecord> = {}): ReliabilityRecord => ({
  consecutiveValid: 0, valid: 0, invalid: 0, errors: 0, turnaroundMsTotal: 0, turnaroundCount: 0, ...partial,
});
const verified = (k: number) => record({ spotChecks: k, valid: k, consecutiveValid: k });

function job(id: string, units: number, o: { verifiable?: boolean; r?: number; q?: number; adaptive?: boolean; work?: number } = {}): JobSpec {
  const r = o.r ?? 2;
  return {
    id, kernel: "pi", params: {}, leaseMs: 60_000, maxErrors: 3,
    units: Array.from({ length: units }, (_, i) => ({ id: `${id}.${i}`, index: i, input: { i }, work: o.work ?? 1 })),
    replication: { target: r, quorum: o.q ?? r, maxInstances: r + 3 }, adaptive: o.adaptive ?? false, verifiable: o.verifiable ?? true,
  };
}

function cluster(trust: TrustPolicy | undefined = DEFAULT_TRUST, random = () => 0.99) {
  const s = new Scheduler({ trust, random });
  return {
    s,
    join(key: string, o: { hostRecord?: ReliabilityRecord; window?: number; network?: string; speed?: number } = {}) {
      s.addVolunteer(key, { window: o.window ?? 4, host: `h-${key}`, account: `acct-${key}`, ...o });
    },
    lease: (key: string, max?: number) => s.leaseTasks(key, T0, max),
    done: (key: string, t: TaskAssignment, output: unknown, at = T0 + 1000): ResultOutcome => s.completeTask(key, t.taskId, output, digest(output), at),
  };
}

const asVerify = (o: ResultOutcome | undefined): VerifyOutcome => {
  if (o?.kind !== "verify") throw new Error(`expected verify, got ${JSON.stringify(o)}`);
  return o;
};

/**
 * Runs job "j" on the volunteers `keys`, all honest (every output 1), with an instant server
 * check: each round every volunteer takes what it may, then returns everything it holds.
 * Returns the job's final state, or "stalled" when, with no lease out and no check running,
 * nobody got a task while the job still runs.
 */
function runToEnd(c: ReturnType<typeof cluster>, keys: string[]): string {
  for (let round = 0; round < 1000 && c.s.jobState("j") === "running"; round++) {
    let held = 0;
    for (const k of keys) held += c.lease(k).length + c.s.heldBy(k).length;
    if (held === 0) return "stalled";
    for (const k of keys) {
      for (const taskId of c.s.heldBy(k)) {
        const o = c.s.completeTask(k, taskId, 1, digest(1), T0 + 1000);
        if (o.kind === "verify") c.s.checked("j", o.unitId, 1, digest(1));
      }
    }
    c.s.audit();
  }
  return c.s.jobState("j") ?? "unknown";
}

/** A result of newcomer `key` on unit `unit` of job "j", read back from the database (as after a reload). */
const recovered = (unit: number, key: string) => ({ unitId: `j.${unit}`, taskId: `old-${unit}-${key}`, host: `h-${key}`, account: `acct-${key}`, output: 1, digest: digest(1) });

describe("credibility", () => {
  it("grows with passed spot-checks as 1 - f/(k·e), from 1 - f for a newcomer", () => {
    expect(hostCredibility(record(), DEFAULT_TRUST)).toBeCloseTo(0.8, 12);
    expect(hostCredibility(verified(1), DEFAULT_TRUST)).toBeCloseTo(1 - 0.2 / Math.E, 12);
    expect(hostCredibility(verified(10), DEFAULT_TRUST)).toBeGreaterThan(hostCredibility(verified(3), DEFAULT_TRUST));
    // Agreed quorums count too, twenty for one check.
    expect(hostCredibility(record({ valid: 40 }), DEFAULT_TRUST)).toBeCloseTo(hostCredibility(verified(2), DEFAULT_TRUST), 12);
  });

  it("of a group: two newcomers agreeing are not enough, two verified hosts are, a disagreement lowers it", () => {
    const [fresh] = groupCredibilities([[0.8, 0.8]]);
    expect(fresh).toBeCloseTo(0.64 / (0.04 + 0.64), 12);
    expect(fresh).toBeLessThan(DEFAULT_TRUST.threshold);
    const c = hostCredibility(verified(10), DEFAULT_TRUST);
    expect(groupCredibilities([[c, c]])[0]).toBeGreaterThan(DEFAULT_TRUST.threshold);
    const [a, b] = groupCredibilities([[c, c], [c]]);
    expect(a).toBeLessThan(groupCredibilities([[c, c]])[0]!);
    expect(a! + b!).toBeLessThanOrEqual(1);
  });

  it("spot-check rate: every result of a newcomer or a suspect, then 1/(1+k) down to the floor", () => {
    expect(spotRate(record(), DEFAULT_TRUST)).toBe(1);
    expect(spotRate(verified(3), DEFAULT_TRUST)).toBeCloseTo(0.25, 12);
    expect(spotRate(verified(500), DEFAULT_TRUST)).toBe(DEFAULT_TRUST.minSpotRate);
    expect(spotRate({ ...verified(500), suspect: 1 }, DEFAULT_TRUST)).toBe(1);
  });
});

describe("scheduler with a trust policy", () => {
  it("holds a unit of two newcomers for a check, and the check decides it: agreeing hosts pass, the others are caught", () => {
    const c = cluster();
    c.s.addJob(job("j", 1), T0);
    c.join("a");
    c.join("b");
    c.join("m");
    const [ta] = c.lease("a");
    const [tm] = c.lease("m");
    expect(c.lease("b")).toEqual([]); // distinct hosts: both copies are out
    expect(c.done("a", ta!, { x: 1 }).kind).toBe("pending");
    // The cheater disagrees: the server settles it at once rather than a third replica.
    const v = asVerify(c.done("m", tm!, { x: 2 }));
    expect(v).toMatchObject({ jobId: "j", unitId: "j.0", kernel: "pi", input: { i: 0 } });
    expect(c.s.progress("j")).toMatchObject({ queued: 0, running: 0, done: 0, pending: 1 });
    c.s.audit();
    const out = c.s.checked("j", "j.0", { x: 1 }, digest({ x: 1 }))!;
    expect(out).toMatchObject({ kind: "validated", checked: true, canonical: { x: 1 }, jobDone: true });
    expect(out.valid.map((r) => r.host)).toEqual(["h-a"]);
    expect(out.caught!.map((r) => r.host)).toEqual(["h-m"]);
    expect(c.s.hostRecord("h-a")).toMatchObject({ spotChecks: 1, valid: 1 });
    expect(c.s.hostRecord("h-m")).toMatchObject({ invalid: 1 });
    expect(c.s.hostRecord("h-m")!.spotChecks).toBeUndefined();
    c.s.audit();
  });

  it("a check that proves everyone wrong takes the server's output and pays no one", () => {
    const c = cluster();
    c.s.addJob(job("j", 1), T0);
    c.join("a");
    c.join("b");
    const [ta] = c.lease("a");
    const [tb] = c.lease("b");
    c.done("a", ta!, { x: 9 });
    asVerify(c.done("b", tb!, { x: 9 })); // two newcomers: not credible enough
    const out = c.s.checked("j", "j.0", { x: 1 }, digest({ x: 1 }))!;
    expect(out).toMatchObject({ canonical: { x: 1 }, valid: [] });
    expect(out.caught!.map((r) => r.host).sort()).toEqual(["h-a", "h-b"]);
  });

  it("accepts two verified hosts' agreement unchecked unless a random spot-check falls on it", () => {
    for (const [random, kind] of [[0.99, "validated"], [0.01, "verify"]] as const) {
      const c = cluster(DEFAULT_TRUST, () => random);
      c.s.addJob(job("j", 1), T0);
      c.join("a", { hostRecord: verified(30) });
      c.join("b", { hostRecord: verified(30) });
      const [ta] = c.lease("a");
      const [tb] = c.lease("b");
      c.done("a", ta!, 1);
      expect(c.done("b", tb!, 1).kind).toBe(kind);
    }
  });

  it("a job the server cannot recompute is decided by its quorum, as without a policy", () => {
    const c = cluster();
    c.s.addJob(job("j", 1, { verifiable: false }), T0);
    c.join("a");
    c.join("b");
    const [ta] = c.lease("a");
    const [tb] = c.lease("b");
    c.done("a", ta!, 1);
    expect(c.done("b", tb!, 1).kind).toBe("validated");
  });

  it("uncheckable: a failed check decides the unit by its quorum", () => {
    const c = cluster();
    c.s.addJob(job("j", 1), T0);
    c.join("a");
    c.join("b");
    const [ta] = c.lease("a");
    const [tb] = c.lease("b");
    c.done("a", ta!, 1);
    asVerify(c.done("b", tb!, 1));
    expect(c.s.uncheckable("j", "j.0")).toMatchObject({ kind: "validated", jobDone: true });
    expect(c.s.checked("j", "j.0", 1, digest(1))).toBeUndefined();
  });

  it("uncheckable: a lone result is not taken on its host's word; a second host's agreeing result decides it", () => {
    const c = cluster();
    c.s.addJob(job("j", 1, { r: 1 }), T0);
    c.join("a");
    const [ta] = c.lease("a");
    // A newcomer's lone result is checked; the check cannot run (too long, or timed out).
    asVerify(c.done("a", ta!, 1));
    expect(c.s.uncheckable("j", "j.0")).toMatchObject({ kind: "pending" });
    c.s.audit();
    // Another host computes it too (never the first again), and its agreeing result decides it.
    expect(c.lease("a")).toEqual([]);
    c.join("b");
    const [tb] = c.lease("b");
    expect(tb?.unitId).toBe("j.0");
    const second = c.done("b", tb!, 1);
    const decided = second.kind === "verify" ? c.s.uncheckable("j", "j.0") : second;
    expect(decided).toMatchObject({ kind: "validated", jobDone: true });
    c.s.audit();
  });

  it("probation: a newcomer's undecided results hold back its window until it passes a check", () => {
    const c = cluster();
    c.s.addJob(job("j", 20), T0);
    c.join("m", { window: 4 });
    const first = c.lease("m");
    expect(first).toHaveLength(4);
    for (const t of first) c.done("m", t, 0);
    // Four results wait for their replicas: nothing more until they are decided.
    expect(c.s.onProbation("m")).toBe(true);
    expect(c.lease("m")).toEqual([]);
    expect(c.s.freeSlots("m")).toBe(0);
    // An honest host completes one of them; the disagreement is checked and m is caught.
    c.join("h");
    const [th] = c.lease("h", 1);
    asVerify(c.done("h", th!, 1));
    c.s.checked("j", th!.unitId, 1, digest(1));
    expect(c.s.onProbation("h")).toBe(false);
    expect(c.lease("h").length).toBeGreaterThan(0); // verified: no probation
    c.s.audit();
  });

  it("probation: results read back after a reload that wait for a partner do not stall a fleet of newcomers", () => {
    // As after a backtrack or a restart: the leases are gone, each newcomer's window is full
    // (or more than full) of results waiting for a second copy, and no verified host is online.
    const c = cluster();
    c.join("a", { window: 2 });
    c.join("b", { window: 2 });
    const { outcomes } = c.s.addJob(job("j", 8), T0, { pending: [recovered(0, "a"), recovered(1, "a"), recovered(2, "a"), recovered(3, "b"), recovered(4, "b")] });
    expect(outcomes).toEqual([]);
    expect(c.s.onProbation("a") && c.s.onProbation("b")).toBe(true);
    // The rule still holds back new units, but not the partner copies that bring those results to a verdict.
    const forA = c.lease("a");
    const forB = c.lease("b");
    expect(forA.map((t) => t.unitId).sort()).toEqual(["j.3", "j.4"]);
    expect(forB.map((t) => t.unitId).sort()).toEqual(["j.0", "j.1"]);
    c.s.audit();
    // The first completes a quorum of two newcomers: checked, and the check lets both go on.
    const v = asVerify(c.done("a", forA[0]!, 1));
    expect(c.s.checked("j", v.unitId, 1, digest(1))).toMatchObject({ kind: "validated", checked: true });
    expect(c.s.onProbation("a") || c.s.onProbation("b")).toBe(false);
    expect(c.s.freeSlots("a")).toBe(1);
    expect(runToEnd(c, ["a", "b"])).toBe("completed");
    c.s.audit();
  });

  it("probation: units holding results read back after a reload are queued first, so a full window finds its partner copies", () => {
    // Past the units a lease looks at, a newcomer whose window is full would find nothing.
    const s = new Scheduler({ trust: DEFAULT_TRUST, random: () => 0.99, scanLimit: 2 });
    for (const k of ["a", "b"]) s.addVolunteer(k, { window: 1, host: `h-${k}`, account: `acct-${k}` });
    s.addJob(job("j", 10), T0, { pending: [recovered(8, "a"), recovered(9, "b")] });
    expect(s.leaseTasks("a", T0).map((t) => t.unitId)).toEqual(["j.9"]);
    expect(s.leaseTasks("b", T0).map((t) => t.unitId)).toEqual(["j.8"]);
    s.audit();
  });

  it("probation: a fleet of newcomers never stalls on results that wait for a copy one of them may compute", () => {
    // Random reloads of a job whose results are scattered over newcomers with small windows:
    // whenever no lease is out and no check runs, some volunteer gets a task until the job ends.
    for (let seed = 1; seed <= 40; seed++) {
      const rand = seededRandom(seed);
      const c = cluster();
      const keys = ["a", "b", "c", "d"].slice(0, 2 + Math.floor(rand() * 3));
      for (const k of keys) c.join(k, { window: 1 + Math.floor(rand() * 2) });
      const pending = [];
      for (let u = 0; u < 12; u++) {
        if (rand() < 0.6) {
          const k = keys[Math.floor(rand() * keys.length)]!;
          pending.push({ unitId: `j.${u}`, taskId: `old-${u}`, host: `h-${k}`, account: `acct-${k}`, output: 1, digest: digest(1) });
        }
      }
      const { outcomes } = c.s.addJob(job("j", 12), T0, { pending });
      expect(outcomes).toEqual([]);
      expect(runToEnd(c, keys), `seed ${seed}`).toBe("completed");
      c.s.audit();
    }
  });

  it("checks a verified host at least once in every 1/minSpotRate results, counted from when the last check was drawn", () => {
    // No random checks (random 0.99): only the forced ones. A check that takes long must not
    // let the results returned meanwhile go uncounted.
    const every = Math.ceil(1 / DEFAULT_TRUST.minSpotRate);
    const c = cluster();
    c.s.addJob(job("j", 100, { r: 1 }), T0);
    c.join("m", { window: 4, hostRecord: verified(500) });
    const run = (n: number) => {
      const outcomes: ResultOutcome[] = [];
      while (outcomes.length < n) {
        const [t] = c.lease("m", 1);
        if (!t) throw new Error(`no task after ${outcomes.length} results`);
        outcomes.push(c.done("m", t, 1));
      }
      return outcomes;
    };
    // The first `every` results: the last is held for a check.
    const first = run(every);
    expect(first.map((o) => o.kind)).toEqual([...Array(every - 1).fill("validated"), "verify"]);
    // While that check runs, the host returns every - 1 more, accepted.
    const during = run(every - 1);
    expect(during.every((o) => o.kind === "validated")).toBe(true);
    const check = asVerify(first.at(-1));
    expect(c.s.checked("j", check.unitId, 1, digest(1))).toMatchObject({ kind: "validated", checked: true });
    // The next one is the `every`-th since that check was drawn: checked.
    expect(run(1)[0]!.kind).toBe("verify");
    c.s.audit();
  });

  it("a verified host starts new units with at most maxUnverified results awaiting their replicas, and still takes copies of started units", () => {
    // A sleeper with a long record that answers instantly: before this bound it ran ahead of
    // its slower honest partners without limit, every fake waiting for the replica that catches it.
    const c = cluster();
    c.s.addJob(job("j", 200), T0);
    c.join("m", { window: 4, hostRecord: verified(50) });
    let sent = 0;
    for (let round = 0; round < 100; round++) {
      const got = c.lease("m");
      if (got.length === 0) break;
      for (const t of got) expect(c.done("m", t, 0).kind).toBe("pending");
      sent += got.length;
    }
    expect(sent).toBeGreaterThanOrEqual(DEFAULT_TRUST.maxUnverified);
    expect(sent).toBeLessThanOrEqual(DEFAULT_TRUST.maxUnverified + 4);
    expect(c.lease("m")).toEqual([]);
    // Another host starts a unit: m may still take its copy, which brings that unit to a verdict.
    c.join("h", { window: 40, hostRecord: verified(50) });
    const mine = new Set(c.s.heldBy("m"));
    const fresh = c.lease("h").find((t) => Number(t.unitId.slice(2)) >= sent);
    expect(fresh, "h starts a unit of its own").toBeDefined();
    expect(c.done("h", fresh!, 0).kind).toBe("pending");
    expect(mine.size).toBe(0);
    expect(c.lease("m").map((t) => t.unitId)).toEqual([fresh!.unitId]);
    c.s.audit();
  });

  it("probation: while the server checks one of its results, a host waits for the verdict, partner copies included", () => {
    const c = cluster();
    c.join("a", { window: 2 });
    c.join("b", { window: 2 });
    // j.0 has its quorum of two newcomers at once: it is held for a check.
    const { outcomes } = c.s.addJob(job("j", 4), T0, { pending: [recovered(0, "a"), recovered(0, "b"), recovered(1, "a"), recovered(2, "b")] });
    expect(outcomes.map((o) => o.kind)).toEqual(["verify"]);
    expect(c.lease("a")).toEqual([]);
    expect(c.lease("b")).toEqual([]);
    // The verdict: both passed a check, and both may work again.
    c.s.checked("j", "j.0", 1, digest(1));
    expect(c.s.freeSlots("a")).toBe(2);
    expect(c.lease("a").map((t) => t.unitId)).toContain("j.2");
    c.s.audit();
  });

  it("placement: the copy completing a quorum of newcomers waits for a verified host while one is online", () => {
    const c = cluster();
    c.s.addJob(job("j", 1), T0);
    c.join("n1");
    c.join("n2");
    c.join("v", { hostRecord: verified(5) });
    c.lease("n1");
    expect(c.lease("n2")).toEqual([]); // would make a quorum of newcomers only
    expect(c.lease("v")).toHaveLength(1);
    // A verified host that takes no work (paused, window 0) is not "available".
    c.s.setWindow("v", 0);
    c.s.addJob(job("k", 1), T0);
    c.lease("n1");
    expect(c.lease("n2")).toHaveLength(1);
    // With no verified host online, newcomers may pair (someone has to start).
    const d = cluster();
    d.s.addJob(job("j", 1), T0);
    d.join("n1");
    d.join("n2");
    d.lease("n1");
    expect(d.lease("n2")).toHaveLength(1);
  });

  it("placement: replicas avoid a network they are on while several networks are online", () => {
    const c = cluster();
    c.s.addJob(job("j", 1), T0);
    c.join("a", { network: "10.0.0.0/24", hostRecord: verified(5) });
    c.join("b", { network: "10.0.0.0/24", hostRecord: verified(5) });
    c.join("c", { network: "10.0.1.0/24", hostRecord: verified(5) });
    c.lease("a");
    expect(c.lease("b")).toEqual([]);
    expect(c.lease("c")).toHaveLength(1);
  });

  it("plausibility: a result faster than the host's benchmark allows makes its next results checked", () => {
    const c = cluster();
    c.s.addJob(job("j", 2, { work: 1000 }), T0); // 1 s of reference work per unit
    c.join("a", { hostRecord: verified(400), speed: 1 });
    c.join("b", { hostRecord: verified(400), speed: 1 });
    const [ta1, ta2] = c.lease("a", 2);
    const [tb1, tb2] = c.lease("b", 2);
    c.done("a", ta1!, 1, T0 + 900);
    expect(c.done("b", tb1!, 1, T0 + 1200).kind).toBe("validated"); // credible, and plausible
    c.done("b", tb2!, 2, T0 + 1300);
    // Back after 5 ms for a second's work: implausible, so this unit is checked.
    expect(c.done("a", ta2!, 2, T0 + 5).kind).toBe("verify");
    expect(c.s.hostRecord("h-a")!.suspect).toBe(1);
  });

  it("adaptive replication trusts a host alone only when it is credible on its own", () => {
    const c = cluster(DEFAULT_TRUST, () => 0.5);
    c.s.addJob(job("j", 2, { adaptive: true }), T0);
    c.join("streak", { hostRecord: record({ consecutiveValid: 50, valid: 50 }) }); // a long streak, never checked
    const [t] = c.lease("streak", 1);
    expect(c.done("streak", t!, 1).kind).toBe("pending"); // not trusted alone: waits for a replica
  });
});

describe("audits (iterative programs: accepted alone, checked after the fact)", () => {
  const auditable = (units: number): JobSpec => ({ ...job("j", units, { r: 1, q: 1, verifiable: false }), kernel: "program", auditable: true });

  it("accepts each result at once and audits a newcomer's first, with one audit in flight per host", () => {
    const c = cluster(DEFAULT_TRUST, () => 0.5);
    c.s.addJob(auditable(6), T0);
    c.join("a", { window: 6 });
    const tasks = c.lease("a");
    expect(tasks).toHaveLength(6);
    const outcomes = tasks.map((t) => c.done("a", t, 1));
    // Every unit is decided by its one result: the round never waits for a check.
    expect(outcomes.map((o) => o.kind)).toEqual(Array(6).fill("validated"));
    const audits = outcomes.flatMap((o) => (o.kind === "validated" ? o.audit ?? [] : []));
    // A newcomer is checked at rate 1, but its first audit must come back before another is drawn.
    expect(audits.map((r) => r.host)).toEqual(["h-a"]);
    expect(audits[0].output).toBe(1);
  });

  it("counts a passed audit as a spot-check (lowering the host's rate) and a failed one as an invalid result", () => {
    const c = cluster(DEFAULT_TRUST, () => 0.4);
    c.s.addJob(auditable(4), T0);
    c.join("a", { window: 1 });
    c.join("b", { window: 1 });
    const [ta] = c.lease("a");
    const [tb] = c.lease("b");
    const oa = c.done("a", ta, 1);
    const ob = c.done("b", tb, 2);
    if (oa.kind !== "validated" || ob.kind !== "validated") throw new Error("expected both validated");
    c.s.audited(oa.audit![0], true);
    c.s.audited(ob.audit![0], false);
    expect(c.s.hostRecord("h-a")).toMatchObject({ spotChecks: 1, invalid: 0 });
    expect(spotRate(c.s.hostRecord("h-a")!, DEFAULT_TRUST)).toBe(0.5);
    expect(c.s.hostRecord("h-b")).toMatchObject({ invalid: 1 });
    expect(c.s.hostRecord("h-b")!.spotChecks ?? 0).toBe(0);
    // Its audit came back: "a" is drawn again at its new rate (0.4 < 0.5).
    const [next] = c.lease("a");
    const o = c.done("a", next, 1);
    expect(o.kind === "validated" && o.audit?.map((r) => r.host)).toEqual(["h-a"]);
    // An audit that could not run moves nothing but lets the next be drawn.
    c.s.audited((o as { audit: Parameters<Scheduler["audited"]>[0][] }).audit[0], undefined);
    expect(c.s.hostRecord("h-a")).toMatchObject({ spotChecks: 1, invalid: 0 });
  });

  it("keeps a barred account from every round of its job, forgets it when the job ends, and ignores a verdict that comes later", () => {
    const c = cluster(DEFAULT_TRUST, () => 0.99);
    const round = (r: number): JobSpec => ({ ...auditable(2), id: `j~r${r}`, units: auditable(2).units.map((u) => ({ ...u, id: `j~r${r}.${u.index}` })) });
    c.join("a", { window: 2 });
    c.join("b", { window: 2 });
    c.s.addJob(round(1), T0);
    c.s.barFromJob("j", "acct-a");
    expect(c.lease("a")).toHaveLength(0);
    for (const t of c.lease("b")) c.done("b", t, 1);
    // The next round is a scheduler job of its own: the account stays kept from it.
    c.s.removeJob("j~r1");
    c.s.addJob(round(2), T0);
    expect(c.lease("a")).toHaveLength(0);
    expect(c.s.stats().barredJobs).toBe(1);
    for (const t of c.lease("b")) c.done("b", t, 1);
    c.s.removeJob("j~r2");
    c.s.jobEnded("j");
    expect(c.s.stats().barredJobs).toBe(0);
    // A paced audit's verdict may arrive after the end: it makes no entry that nothing would remove.
    expect(c.s.barFromJob("j", "acct-b")).toBe(false);
    expect(c.s.stats().barredJobs).toBe(0);
    // Another job is barred as before.
    c.s.barFromJob("k", "acct-b");
    expect(c.s.stats().barredJobs).toBe(1);
  });

  it("audits nothing without a trust policy, or for a job that is not auditable", () => {
    for (const [trust, spec] of [[undefined, auditable(2)], [DEFAULT_TRUST, { ...auditable(2), auditable: false }]] as const) {
      const s = new Scheduler({ trust, random: () => 0 });
      s.addJob(spec, T0);
      s.addVolunteer("a", { window: 2, host: "h-a", account: "acct-a" });
      for (const t of s.leaseTasks("a", T0)) {
        const o = s.completeTask("a", t.taskId, 1, digest(1), T0 + 1000);
        expect(o.kind).toBe("validated");
        expect((o as { audit?: unknown }).audit).toBeUndefined();
      }
    }
  });
});
