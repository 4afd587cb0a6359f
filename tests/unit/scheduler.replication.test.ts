import { describe, it, expect } from "vitest";
import { Scheduler, outputsAgree } from "../../server/scheduler/index.js";
import type {
  Comparator,
  JobSpec,
  ReliabilityRecord,
  ResultOutcome,
  SchedulerOptions,
  TaskAssignment,
  ValidatedOutcome,
} from "../../server/scheduler/index.js";
import { seededRandom as mulberry32 } from "../helpers/random";

const T0 = 1_700_000_000_000;
const EXACT: Comparator = { kind: "exact" };
const TOLERANT: Comparator = { kind: "tolerance", relative: 1e-9, absolute: 1e-12 };

function job(
  id: string,
  units: number,
  opts: Partial<Omit<JobSpec, "id" | "units" | "replication">> & { r?: number; q?: number; m?: number } = {},
): JobSpec {
  const r = opts.r ?? 2;
  return {
    id,
    kernel: "pi",
    params: {},
    units: Array.from({ length: units }, (_, i) => ({ id: `${id}-u${i}`, index: i, input: { i }, work: 10 + i })),
    leaseMs: opts.leaseMs ?? 1000,
    maxErrors: opts.maxErrors ?? 3,
    replication: { target: r, quorum: opts.q ?? r, maxInstances: opts.m ?? r + 1 },
    adaptive: opts.adaptive ?? false,
    comparator: opts.comparator ?? EXACT,
  };
}

function record(partial: Partial<ReliabilityRecord> = {}): ReliabilityRecord {
  return { consecutiveValid: 0, valid: 0, invalid: 0, errors: 0, turnaroundMsTotal: 0, turnaroundCount: 0, ...partial };
}

const digest = (output: unknown) => JSON.stringify(output);

/**
 * A scheduler plus shorthands: `join("a")` connects socket a as host h-a of account
 * acct-a unless told otherwise; `done(key, task, output)` reports a result.
 */
function cluster(options: SchedulerOptions = {}) {
  const s = new Scheduler(options);
  let now = T0;
  return {
    s,
    at: (t: number) => (now = t),
    join(key: string, o: { host?: string; account?: string; window?: number; hostRecord?: ReliabilityRecord } = {}) {
      s.addVolunteer(key, { window: o.window ?? 4, host: o.host ?? `h-${key}`, account: o.account ?? `acct-${key}`, hostRecord: o.hostRecord });
    },
    lease: (key: string, max?: number) => s.leaseTasks(key, now, max),
    done: (key: string, task: TaskAssignment | string, output: unknown): ResultOutcome => {
      const taskId = typeof task === "string" ? task : task.taskId;
      return s.completeTask(key, taskId, output, digest(output), now);
    },
  };
}

const unitsOf = (tasks: TaskAssignment[]) => tasks.map((t) => t.unitId);

function validated(o: ResultOutcome): ValidatedOutcome {
  if (o.kind !== "validated") throw new Error(`expected validated, got ${JSON.stringify(o)}`);
  return o;
}

describe("outputsAgree", () => {
  it("exact: same structure and values, key order does not matter", () => {
    expect(outputsAgree({ a: 1, b: [1, "x", null, true] }, { b: [1, "x", null, true], a: 1 }, EXACT)).toBe(true);
    expect(outputsAgree(3.14, 3.14, EXACT)).toBe(true);
    expect(outputsAgree(0.1 + 0.2, 0.3, EXACT)).toBe(false);
    expect(outputsAgree({ a: 1 }, { a: 1, b: undefined }, EXACT)).toBe(false);
    expect(outputsAgree([1, 2], [1, 2, 3], EXACT)).toBe(false);
    expect(outputsAgree([], {}, EXACT)).toBe(false);
    expect(outputsAgree(null, {}, EXACT)).toBe(false);
    expect(outputsAgree("1", 1, EXACT)).toBe(false);
    expect(outputsAgree({ a: "x" }, { a: "y" }, EXACT)).toBe(false);
  });

  it("tolerance accepts 1e-12 differences, relative to the magnitude or absolute near zero", () => {
    expect(outputsAgree({ pi: Math.PI }, { pi: Math.PI + 1e-12 }, TOLERANT)).toBe(true);
    expect(outputsAgree([1e6, 2e6], [1e6 + 1e-4, 2e6 - 1e-4], TOLERANT)).toBe(true); // relative 1e-10
    expect(outputsAgree({ x: 0 }, { x: 1e-12 }, TOLERANT)).toBe(true); // absolute
    expect(outputsAgree({ x: 0 }, { x: 1e-11 }, TOLERANT)).toBe(false);
    expect(outputsAgree({ pi: Math.PI }, { pi: Math.PI + 1e-6 }, TOLERANT)).toBe(false);
    // Symmetric.
    expect(outputsAgree(1, 1 + 5e-10, TOLERANT)).toBe(outputsAgree(1 + 5e-10, 1, TOLERANT));
    expect(outputsAgree(Infinity, Infinity, TOLERANT)).toBe(true);
    expect(outputsAgree(Infinity, 1e308, TOLERANT)).toBe(false);
    expect(outputsAgree(Number.NaN, Number.NaN, TOLERANT)).toBe(true);
  });

  it("tolerance still rejects any difference of structure, keys or strings", () => {
    expect(outputsAgree({ pi: 1 }, { pi: 1, n: 0 }, TOLERANT)).toBe(false);
    expect(outputsAgree({ pi: 1 }, { tau: 1 }, TOLERANT)).toBe(false);
    expect(outputsAgree([1, 2], [1, 2, 0], TOLERANT)).toBe(false);
    expect(outputsAgree({ v: [1] }, { v: 1 }, TOLERANT)).toBe(false);
    expect(outputsAgree({ v: "1.0" }, { v: "1.00" }, TOLERANT)).toBe(false);
    expect(outputsAgree({ v: 1 }, { v: "1" }, TOLERANT)).toBe(false);
    expect(outputsAgree({ v: null }, { v: 0 }, TOLERANT)).toBe(false);
    expect(outputsAgree({ v: true }, { v: 1 }, TOLERANT)).toBe(false);
  });
});

describe("job spec", () => {
  it("needs 1 <= quorum <= target <= maxInstances and a sane comparator", () => {
    const s = new Scheduler();
    expect(() => s.addJob(job("a", 1, { r: 2, q: 3, m: 3 }), T0)).toThrow(RangeError);
    expect(() => s.addJob(job("b", 1, { r: 3, q: 2, m: 2 }), T0)).toThrow(RangeError);
    expect(() => s.addJob(job("c", 1, { r: 1, q: 0, m: 1 }), T0)).toThrow(RangeError);
    expect(() => s.addJob(job("d", 1, { r: 1.5, q: 1, m: 2 }), T0)).toThrow(RangeError);
    expect(() => s.addJob(job("e", 1, { comparator: { kind: "tolerance", relative: -1, absolute: 0 } }), T0)).toThrow(RangeError);
    expect(s.stats()).toMatchObject({ queued: 0, runningJobs: 0 });
    expect(s.addJob(job("ok", 1, { r: 3, q: 2, m: 3 }), T0).progress.state).toBe("running");
  });

  it("defaults to two instances, quorum two", () => {
    const { s, join, lease, done } = cluster();
    const spec = job("a", 1);
    delete spec.replication;
    delete spec.comparator;
    s.addJob(spec, T0);
    join("a");
    join("b");
    const [ta] = lease("a");
    const [tb] = lease("b");
    expect(done("a", ta!, 1)).toMatchObject({ kind: "pending" });
    expect(done("b", tb!, 1)).toMatchObject({ kind: "validated", jobDone: true });
  });
});

describe("quorum", () => {
  it("validates a unit once when both instances agree, and credits host and account", () => {
    const { s, at, join, lease, done } = cluster();
    s.addJob(job("j", 1, { r: 2, q: 2 }), T0);
    join("a");
    join("b");
    const [ta] = lease("a");
    expect(s.progress("j")).toMatchObject({ queued: 1, running: 1 }); // still wants its second instance
    const [tb] = lease("b");
    expect(ta!.unitId).toBe("j-u0");
    expect(tb!.unitId).toBe("j-u0");
    expect(ta!.taskId).not.toBe(tb!.taskId);
    expect(s.progress("j")).toMatchObject({ queued: 0, running: 2 });

    at(T0 + 100);
    expect(done("a", ta!, { pi: 3 })).toEqual({ kind: "pending", jobId: "j", unitId: "j-u0", taskId: ta!.taskId, requeued: false });
    expect(s.stats()).toMatchObject({ pendingResults: 1, leased: 1 });
    expect(s.progress("j")).toMatchObject({ pending: 1, done: 0, instancesReturned: 1 });
    at(T0 + 250);
    const o = done("b", tb!, { pi: 3 });
    expect(o).toEqual({
      kind: "validated",
      jobId: "j",
      unitId: "j-u0",
      index: 0,
      work: 10,
      taskId: tb!.taskId,
      canonical: { pi: 3 },
      valid: [
        { taskId: ta!.taskId, volunteer: "a", host: "h-a", account: "acct-a", output: { pi: 3 }, digest: digest({ pi: 3 }), turnaroundMs: 100 },
        { taskId: tb!.taskId, volunteer: "b", host: "h-b", account: "acct-b", output: { pi: 3 }, digest: digest({ pi: 3 }), turnaroundMs: 250 },
      ],
      invalid: [],
      revoked: [],
      jobDone: true,
    });
    expect(s.hostRecord("h-a")).toEqual(record({ consecutiveValid: 1, valid: 1, turnaroundMsTotal: 100, turnaroundCount: 1 }));
    expect(s.accountRecord("acct-b")).toEqual(record({ consecutiveValid: 1, valid: 1, turnaroundMsTotal: 250, turnaroundCount: 1 }));
    expect(s.stats()).toMatchObject({ pendingResults: 0, leased: 0, runningJobs: 0 });
    expect(s.progress("j")).toMatchObject({ state: "completed", done: 1, pending: 0, instancesReturned: 2 });
    expect(done("b", tb!, { pi: 3 })).toEqual({ kind: "stale", reason: "unknown-task" });
    s.audit();
  });

  it("issues a third instance to a third host on disagreement; the odd result is invalid", () => {
    const { s, join, lease, done } = cluster();
    s.addJob(job("j", 1, { r: 2, q: 2, m: 3 }), T0);
    for (const k of ["a", "b", "c"]) join(k, { hostRecord: record({ consecutiveValid: 4, valid: 4 }) });
    const [ta] = lease("a");
    const [tb] = lease("b");
    expect(lease("c")).toEqual([]); // both instances are out
    expect(done("a", ta!, 41)).toMatchObject({ kind: "pending", requeued: false });
    expect(done("b", tb!, 42)).toMatchObject({ kind: "pending", requeued: true });
    expect(s.progress("j")).toMatchObject({ queued: 1, running: 0, pending: 1 });
    // a and b have answered: only c may take the third instance.
    expect(lease("a")).toEqual([]);
    expect(lease("b")).toEqual([]);
    const [tc] = lease("c");
    expect(tc!.unitId).toBe("j-u0");
    const o = validated(done("c", tc!, 42));
    expect(o.canonical).toBe(42);
    expect(o.valid.map((r) => r.volunteer)).toEqual(["b", "c"]);
    expect(o.invalid.map((r) => r.volunteer)).toEqual(["a"]);
    expect(o.jobDone).toBe(true);
    expect(s.hostRecord("h-a")).toMatchObject({ consecutiveValid: 0, valid: 4, invalid: 1 });
    expect(s.accountRecord("acct-a")).toMatchObject({ consecutiveValid: 0, invalid: 1 });
    expect(s.hostRecord("h-b")).toMatchObject({ consecutiveValid: 5, valid: 5, invalid: 0 });
    s.audit();
  });

  it("fails the unit and the job when maxInstances results cannot agree", () => {
    const { s, join, lease, done } = cluster();
    s.addJob(job("j", 3, { r: 2, q: 2, m: 3 }), T0);
    for (const k of ["a", "b", "c", "d"]) join(k, { window: 1 });
    const [ta] = lease("a"); // u0
    const [tb] = lease("b"); // u0
    const [tc] = lease("c"); // u1
    const [td] = lease("d"); // u1
    expect(unitsOf([ta!, tb!, tc!, td!])).toEqual(["j-u0", "j-u0", "j-u1", "j-u1"]);
    done("a", ta!, 1);
    expect(done("b", tb!, 2)).toMatchObject({ kind: "pending", requeued: true });
    const [tc2] = lease("c", 0); // c is full
    expect(tc2).toBeUndefined();
    done("c", tc!, 5); // u1 pending; c is free again and takes u0's third instance
    const [te] = lease("c");
    expect(te!.unitId).toBe("j-u0");
    const o = done("c", te!, 3);
    const reason = "no quorum for unit 0: 3 results, 3 different answers (quorum 2, at most 3 instances)";
    expect(o).toEqual({
      kind: "unit-failed",
      jobId: "j",
      unitId: "j-u0",
      index: 0,
      taskId: te!.taskId,
      reason,
      invalid: [expect.objectContaining({ output: 1 }), expect.objectContaining({ output: 2 }), expect.objectContaining({ output: 3 })],
      dropped: [{ taskId: td!.taskId, volunteerId: "d", jobId: "j", unitId: "j-u1" }],
    });
    expect(s.jobState("j")).toBe("failed");
    expect(s.jobError("j")).toBe(reason);
    expect(s.stats()).toEqual({ volunteers: 4, queued: 0, leased: 0, runningJobs: 0, pendingResults: 0, barredJobs: 0 });
    expect(done("d", td!, 5)).toEqual({ kind: "stale", reason: "unknown-task" });
    // Without a quorum nobody is known to be wrong: records are untouched.
    expect(s.hostRecord("h-a")).toEqual(record());
    s.audit();
  });

  it("fails as soon as the quorum is out of reach, without waiting for the last instance", () => {
    const { s, join, lease, done } = cluster();
    s.addJob(job("j", 1, { r: 3, q: 3, m: 3 }), T0);
    for (const k of ["a", "b", "c"]) join(k);
    const [ta] = lease("a");
    const [tb] = lease("b");
    const [tc] = lease("c");
    expect(done("a", ta!, "x")).toMatchObject({ kind: "pending" });
    expect(done("b", tb!, "y")).toMatchObject({
      kind: "unit-failed",
      reason: "no quorum for unit 0: 2 results, 2 different answers (quorum 3, at most 3 instances)",
      dropped: [{ taskId: tc!.taskId, volunteerId: "c", jobId: "j", unitId: "j-u0" }],
    });
  });

  it("waits for outstanding instances rather than issuing more when they may still agree", () => {
    const { s, join, lease, done } = cluster();
    s.addJob(job("j", 1, { r: 3, q: 2, m: 5 }), T0);
    for (const k of ["a", "b", "c", "d"]) join(k);
    const [ta] = lease("a");
    const [tb] = lease("b");
    const [tc] = lease("c");
    done("a", ta!, 1);
    expect(done("b", tb!, 2)).toMatchObject({ kind: "pending", requeued: false }); // c may break the tie
    expect(lease("d")).toEqual([]);
    expect(validated(done("c", tc!, 2)).invalid.map((r) => r.volunteer)).toEqual(["a"]);
  });

  it("validates with a tolerance comparator across 1e-12 differences, not across structure", () => {
    const { s, join, lease, done } = cluster();
    s.addJob(job("j", 2, { r: 2, q: 2, m: 4, comparator: TOLERANT }), T0);
    for (const k of ["a", "b", "c"]) join(k, { window: 1 });
    const [a0] = lease("a");
    const [b0] = lease("b");
    done("a", a0!, { area: 0.5, hits: [1, 2] });
    const o = validated(done("b", b0!, { area: 0.5 + 1e-12, hits: [1, 2] }));
    expect(o.valid).toHaveLength(2);
    expect(o.canonical).toEqual({ area: 0.5, hits: [1, 2] });
    const [a1] = lease("a");
    const [b1] = lease("b");
    done("a", a1!, { area: 0.5, hits: [1, 2] });
    expect(done("b", b1!, { area: 0.5, hits: [1, 2, 0] })).toMatchObject({ kind: "pending", requeued: true });
    const [c1] = lease("c");
    expect(validated(done("c", c1!, { hits: [1, 2], area: 0.5 - 1e-13 })).invalid.map((r) => r.volunteer)).toEqual(["b"]);
  });
});

describe("distinctness", () => {
  it("never gives one unit to two sockets of one host, but another host gets it", () => {
    const { s, join, lease, done } = cluster();
    s.addJob(job("j", 1, { r: 2 }), T0);
    join("tab1", { host: "browser", account: "anon:browser" });
    join("tab2", { host: "browser", account: "anon:browser" });
    join("cli", { host: "laptop", account: "user:9" });
    const [t1] = lease("tab1");
    expect(lease("tab2")).toEqual([]);
    done("tab1", t1!, 7);
    expect(lease("tab2")).toEqual([]); // a returned result blocks the host too
    expect(lease("tab1")).toEqual([]);
    const [t3] = lease("cli");
    expect(t3!.unitId).toBe("j-u0");
    expect(done("cli", t3!, 7).kind).toBe("validated");
  });

  it("never gives one unit to two hosts of one account", () => {
    const { s, join, lease } = cluster();
    s.addJob(job("j", 1, { r: 2 }), T0);
    join("home", { host: "h1", account: "user:1" });
    join("work", { host: "h2", account: "user:1" });
    join("friend", { host: "h3", account: "user:2" });
    expect(lease("home")).toHaveLength(1);
    expect(lease("work")).toEqual([]);
    expect(lease("friend")).toHaveLength(1);
  });

  it("lets a host take a unit again after its instance expired", () => {
    const { s, at, join, lease } = cluster();
    s.addJob(job("j", 1, { r: 2, leaseMs: 100 }), T0);
    join("a");
    expect(lease("a")).toHaveLength(1);
    at(T0 + 100);
    expect(s.expireLeases(T0 + 100)).toHaveLength(1);
    expect(lease("a")).toHaveLength(1);
  });

  it("a lone volunteer holds one instance of each unit and the units wait for a second", () => {
    const { s, join, lease } = cluster();
    s.addJob(job("j", 5, { r: 2 }), T0);
    join("a", { window: 10 });
    expect(unitsOf(lease("a"))).toEqual(["j-u0", "j-u1", "j-u2", "j-u3", "j-u4"]);
    expect(s.progress("j")).toMatchObject({ queued: 5, running: 5 });
    expect(s.hungryVolunteers()).toEqual(["a"]);
    expect(lease("a")).toEqual([]);
    join("b", { window: 10 });
    expect(unitsOf(lease("b"))).toEqual(["j-u0", "j-u1", "j-u2", "j-u3", "j-u4"]);
    expect(s.progress("j")).toMatchObject({ queued: 0, running: 10 });
    s.audit();
  });

  it("skips ineligible units in a bounded scan, keeping queue order, then tries the next job", () => {
    const { s, join, lease } = cluster({ scanLimit: 2 });
    s.addJob(job("x", 4, { r: 2 }), T0);
    join("a", { window: 10 });
    join("b", { window: 10 });
    expect(unitsOf(lease("a", 2))).toEqual(["x-u0", "x-u1"]);
    // x-u2 is eligible but beyond the two units a may look at.
    expect(lease("a")).toEqual([]);
    s.addJob(job("y", 1, { r: 1, q: 1, m: 1 }), T0);
    expect(unitsOf(lease("a"))).toEqual(["y-u0"]);
    // The skipped units kept their order: b takes them first, then the rest.
    expect(unitsOf(lease("b"))).toEqual(["x-u0", "x-u1", "x-u2", "x-u3"]);
    s.audit();
  });

  it("honours hosts and accounts of results recovered after a restart", () => {
    const { s, join, lease } = cluster();
    s.addJob(job("j", 1, { r: 2 }), T0, {
      pending: [{ unitId: "j-u0", taskId: "old#1", host: "h1", account: "user:1", output: 5, digest: digest(5) }],
    });
    join("same-host", { host: "h1", account: "user:7" });
    join("same-account", { host: "h9", account: "user:1" });
    join("other", { host: "h2", account: "user:2" });
    expect(lease("same-host")).toEqual([]);
    expect(lease("same-account")).toEqual([]);
    expect(unitsOf(lease("other"))).toEqual(["j-u0"]);
  });
});

describe("instances, errors and expiry", () => {
  it("counts errors against maxErrors and the records, resetting the valid streak", () => {
    const { s, join, lease } = cluster();
    s.addJob(job("j", 2, { r: 2, q: 2, m: 10, maxErrors: 2 }), T0);
    join("a", { hostRecord: record({ consecutiveValid: 30, valid: 30 }) });
    join("b");
    join("c");
    const [a0] = lease("a", 1);
    const [b0] = lease("b", 1);
    expect(s.failTask("a", a0!.taskId, "boom", T0)).toEqual({
      kind: "error-recorded",
      jobId: "j",
      unitId: "j-u0",
      taskId: a0!.taskId,
      host: "h-a",
      account: "acct-a",
      requeued: true,
      jobFailed: false,
      dropped: [],
    });
    expect(s.hostRecord("h-a")).toEqual(record({ consecutiveValid: 0, valid: 30, errors: 1 }));
    expect(s.accountRecord("acct-a")).toEqual(record({ errors: 1 }));
    expect(s.progress("j")).toMatchObject({ instancesReturned: 1, queued: 2 });
    const [c0] = lease("c", 1);
    expect(c0!.unitId).toBe("j-u0");
    const o = s.failTask("c", c0!.taskId, "boom again", T0);
    expect(o).toMatchObject({ kind: "error-recorded", requeued: false, jobFailed: true });
    expect(o.kind === "error-recorded" && o.dropped.map((d) => d.taskId)).toEqual([b0!.taskId]);
    expect(s.jobState("j")).toBe("failed");
    expect(s.jobError("j")).toBe("boom again (unit 0 failed on 2 hosts)");
  });

  it("counts errors toward maxInstances: a unit that can no longer reach quorum fails the job", () => {
    const { s, join, lease } = cluster();
    s.addJob(job("j", 1, { r: 2, q: 2, m: 3, maxErrors: 10 }), T0);
    join("a");
    join("b");
    const [a0] = lease("a");
    const [b0] = lease("b");
    expect(s.failTask("a", a0!.taskId, "boom", T0)).toMatchObject({ requeued: true, jobFailed: false });
    expect(s.failTask("b", b0!.taskId, "bang", T0)).toMatchObject({ requeued: false, jobFailed: true });
    expect(s.jobError("j")).toBe("no quorum for unit 0: 0 results, 2 errors (quorum 2, at most 3 instances); last error: bang");
  });

  it("an error then disagreement exhausts maxInstances", () => {
    const { s, join, lease, done } = cluster();
    s.addJob(job("j", 1, { r: 2, q: 2, m: 3 }), T0);
    for (const k of ["a", "b", "c"]) join(k);
    const [a0] = lease("a");
    const [b0] = lease("b");
    s.failTask("a", a0!.taskId, "boom", T0);
    const [c0] = lease("c");
    done("b", b0!, 1);
    expect(done("c", c0!, 2)).toMatchObject({
      kind: "unit-failed",
      reason: "no quorum for unit 0: 2 results, 2 different answers, 1 error (quorum 2, at most 3 instances)",
    });
  });

  it("does not count expired or disconnected instances toward maxInstances", () => {
    const { s, at, join, lease, done } = cluster();
    s.addJob(job("j", 1, { r: 2, q: 2, m: 2, leaseMs: 100 }), T0);
    let t = T0;
    for (let round = 0; round < 4; round++) {
      join(`a${round}`);
      join(`b${round}`);
      expect(lease(`a${round}`)).toHaveLength(1);
      expect(lease(`b${round}`)).toHaveLength(1);
      if (round % 2 === 0) {
        t += 100;
        at(t);
        expect(s.expireLeases(t)).toHaveLength(2);
      } else {
        s.removeVolunteer(`a${round}`, t);
        s.removeVolunteer(`b${round}`, t);
      }
      expect(s.progress("j")).toMatchObject({ state: "running", queued: 1, running: 0, instancesReturned: 0 });
    }
    join("x");
    join("y");
    const [x] = lease("x");
    const [y] = lease("y");
    done("x", x!, "ok");
    expect(done("y", y!, "ok")).toMatchObject({ kind: "validated", jobDone: true });
  });

  it("makes the late results of revoked instances stale", () => {
    const { s, join, lease, done } = cluster();
    s.addJob(job("j", 2, { r: 3, q: 2, m: 3 }), T0);
    for (const k of ["a", "b", "c"]) join(k, { window: 1 });
    const [a0] = lease("a");
    const [b0] = lease("b");
    const [c0] = lease("c");
    expect(unitsOf([a0!, b0!, c0!])).toEqual(["j-u0", "j-u0", "j-u0"]);
    done("a", a0!, 1);
    const o = validated(done("b", b0!, 1));
    expect(o.revoked).toEqual([{ taskId: c0!.taskId, volunteerId: "c", jobId: "j", unitId: "j-u0" }]);
    expect(s.heldBy("c")).toEqual([]);
    expect(done("c", c0!, 1)).toEqual({ kind: "stale", reason: "unknown-task" });
    expect(s.failTask("c", c0!.taskId, "x", T0)).toEqual({ kind: "stale", reason: "unknown-task" });
    expect(s.hostRecord("h-c")).toEqual(record());
    s.audit();
  });

  it("drops a unit validated while it still waited in the queue", () => {
    const { s, join, lease, done } = cluster();
    s.addJob(job("j", 2, { r: 3, q: 2, m: 3 }), T0);
    for (const k of ["a", "b", "c"]) join(k, { window: 1 });
    const [a0] = lease("a");
    const [b0] = lease("b");
    expect(s.progress("j")).toMatchObject({ queued: 2 });
    done("a", a0!, 1);
    expect(done("b", b0!, 1)).toMatchObject({ kind: "validated", revoked: [] });
    expect(s.progress("j")).toMatchObject({ queued: 1, done: 1 });
    expect(s.stats().queued).toBe(1);
    s.audit();
    expect(unitsOf(lease("c"))).toEqual(["j-u1"]);
    s.audit();
  });
});

describe("adaptive replication", () => {
  /**
   * Host T (with `streak` valid results in a row) always takes a unit's first instance;
   * helper H completes the units that were not trusted to T alone.
   */
  function runAdaptive(seed: number, streak: number, units: number, calls = { n: 0 }) {
    const rand = mulberry32(seed);
    const { s, join, lease, done } = cluster({ random: () => (calls.n++, rand()) });
    s.addJob(job("j", units, { r: 2, q: 2, m: 3, adaptive: true }), T0);
    join("T", { window: 1, hostRecord: record({ consecutiveValid: streak, valid: streak }) });
    join("H", { window: 1 });
    let alone = 0;
    let replicated = 0;
    for (let i = 0; i < units; i++) {
      const [t] = lease("T");
      expect(t!.index).toBe(i);
      const o = done("T", t!, i * 2);
      if (o.kind === "validated") {
        expect(o.valid.map((r) => r.volunteer)).toEqual(["T"]);
        alone++;
      } else {
        expect(o.kind).toBe("pending");
        const [h] = lease("H");
        expect(h!.unitId).toBe(t!.unitId);
        expect(validated(done("H", h!, i * 2)).valid).toHaveLength(2);
        replicated++;
      }
    }
    expect(s.jobState("j")).toBe("completed");
    return { s, alone, replicated };
  }

  it("trusts a host with 50 valid results in a row with most units, spot-checking some", () => {
    const { s, alone, replicated } = runAdaptive(7, 50, 1000);
    expect(alone + replicated).toBe(1000);
    // Expected share alone: (1 - 1/streak) * (1 - spotCheckRate), about 0.89 here.
    expect(alone).toBeGreaterThan(850);
    expect(alone).toBeLessThan(930);
    expect(replicated).toBeGreaterThan(70);
    expect(s.hostRecord("h-T")).toMatchObject({ consecutiveValid: 1050, valid: 1050 });
    expect(s.hostRecord("h-H")).toMatchObject({ valid: replicated });
    // Deterministic with a fixed seed.
    expect(runAdaptive(7, 50, 1000).alone).toBe(alone);
  });

  it("never trusts a new host until it has 10 valid results in a row, and draws no randomness before", () => {
    const calls = { n: 0 };
    // Units 0..9 are leased with 0..9 valid results on record.
    expect(runAdaptive(1, 0, 10, calls).alone).toBe(0);
    expect(calls.n).toBe(0);
    const { alone, s } = runAdaptive(1, 0, 300, calls);
    expect(calls.n).toBeGreaterThan(0);
    expect(alone).toBeGreaterThan(200); // it earned trust along the way
    expect(s.hostRecord("h-T")).toMatchObject({ consecutiveValid: 300 });
  });

  it("ignores host reliability when the job does not allow adaptive replication", () => {
    const { s, join, lease, done } = cluster({ random: () => 0.5 });
    s.addJob(job("j", 1, { r: 2, q: 2 }), T0);
    join("T", { hostRecord: record({ consecutiveValid: 1000 }) });
    const [t] = lease("T");
    expect(done("T", t!, 1).kind).toBe("pending");
  });

  it("falls back to R instances when the trusted instance expires or errors", () => {
    // random 0.5: trusted (0.5 < 1 - 1/50) and no spot check (0.5 >= 0.1).
    const { s, at, join, lease, done } = cluster({ random: () => 0.5 });
    s.addJob(job("j", 2, { r: 2, q: 2, m: 4, adaptive: true, leaseMs: 100 }), T0);
    join("T", { window: 1, hostRecord: record({ consecutiveValid: 50 }) });
    join("T2", { window: 1, hostRecord: record({ consecutiveValid: 50 }) });
    join("H", { window: 2 });
    const [t0] = lease("T");
    expect(s.progress("j")).toMatchObject({ queued: 1 }); // j-u0 needs nothing more
    at(T0 + 100);
    s.expireLeases(T0 + 100);
    expect(s.progress("j")).toMatchObject({ queued: 2 });
    // Back to normal replication: T2 and H both get j-u0, and T2's result alone does not do.
    const [t2] = lease("T2");
    expect(t2!.unitId).toBe(t0!.unitId);
    expect(unitsOf(lease("H"))).toEqual(["j-u0", "j-u1"]);
    expect(done("T2", t2!, 9).kind).toBe("pending");
    // j-u1 was leased first by H (new host): replicated; T takes its second instance.
    const [t1] = lease("T");
    expect(t1!.unitId).toBe("j-u1");
    const errored = s.failTask("T", t1!.taskId, "oops", T0 + 100);
    expect(errored).toMatchObject({ requeued: true });
    expect(s.hostRecord("h-T")).toMatchObject({ consecutiveValid: 0, errors: 1 });
    s.audit();
  });

  it("falls back when the trusted instance errors", () => {
    const { s, join, lease, done } = cluster({ random: () => 0.5 });
    s.addJob(job("j", 1, { r: 2, q: 2, m: 4, adaptive: true }), T0);
    join("T", { hostRecord: record({ consecutiveValid: 50 }) });
    join("A");
    join("B");
    const [t] = lease("T");
    expect(s.progress("j")).toMatchObject({ queued: 0, running: 1 });
    expect(s.failTask("T", t!.taskId, "oops", T0)).toMatchObject({ requeued: true });
    expect(s.progress("j")).toMatchObject({ queued: 1 });
    const [a] = lease("A");
    const [b] = lease("B");
    expect(done("A", a!, 3).kind).toBe("pending");
    expect(done("B", b!, 3).kind).toBe("validated");
  });

  it("an invalid result ends the streak, so the host is replicated again", () => {
    const { s, join, lease, done } = cluster({ random: () => 0.5 });
    s.addJob(job("j", 3, { r: 2, q: 2, m: 3, adaptive: true }), T0);
    join("A", { window: 1 });
    join("B", { window: 1 });
    join("T", { window: 1, hostRecord: record({ consecutiveValid: 50, valid: 50 }) });
    const [a] = lease("A"); // j-u0, replicated (new host)
    const [t] = lease("T"); // j-u0 second instance: not the first, so not trusted
    expect(t!.unitId).toBe("j-u0");
    done("T", t!, "wrong");
    expect(done("A", a!, "right")).toMatchObject({ kind: "pending", requeued: true });
    const [b] = lease("B");
    expect(b!.unitId).toBe("j-u0");
    expect(validated(done("B", b!, "right")).invalid.map((r) => r.volunteer)).toEqual(["T"]);
    expect(s.hostRecord("h-T")).toEqual(record({ consecutiveValid: 0, valid: 50, invalid: 1 }));
    const [t1] = lease("T"); // first instance of j-u1, but the streak is gone
    expect(done("T", t1!, 1).kind).toBe("pending");
  });
});

describe("recovery", () => {
  const pendingResult = (unitId: string, host: string, account: string, output: unknown, taskId = `${unitId}#old-${host}`) => ({
    unitId,
    taskId,
    host,
    account,
    output,
    digest: digest(output),
  });

  it("counts recovered results toward quorum: one new result completes it", () => {
    const { s, join, lease, done } = cluster();
    const { progress, outcomes } = s.addJob(job("j", 2, { r: 2, q: 2 }), T0, {
      done: ["j-u1"],
      pending: [pendingResult("j-u0", "h1", "user:1", 5)],
    });
    expect(outcomes).toEqual([]);
    expect(progress).toMatchObject({ queued: 1, running: 0, done: 1, pending: 1, instancesReturned: 1 });
    expect(s.stats()).toMatchObject({ queued: 1, pendingResults: 1 });
    join("b");
    const [t] = lease("b");
    expect(t!.unitId).toBe("j-u0");
    expect(lease("b")).toEqual([]); // needs one instance only
    const o = validated(done("b", t!, 5));
    expect(o.valid).toEqual([
      { taskId: "j-u0#old-h1", host: "h1", account: "user:1", output: 5, digest: digest(5) },
      expect.objectContaining({ taskId: t!.taskId, volunteer: "b" }),
    ]);
    expect(o.jobDone).toBe(true);
    expect(s.hostRecord("h1")).toEqual(record({ consecutiveValid: 1, valid: 1 }));
    s.audit();
  });

  it("validates recovered results that already form a quorum at once, seeding their records", () => {
    const s = new Scheduler();
    const seeded = { ...pendingResult("j-u0", "h1", "user:1", 5), hostRecord: record({ consecutiveValid: 7, valid: 7 }) };
    const { progress, outcomes } = s.addJob(job("j", 2, { r: 2, q: 2, m: 3 }), T0, {
      pending: [seeded, pendingResult("j-u0", "h2", "user:2", 5), pendingResult("j-u1", "h1", "user:1", 1), pendingResult("j-u1", "h3", "user:3", 2)],
    });
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]).toMatchObject({ kind: "validated", unitId: "j-u0", taskId: "j-u0#old-h2", canonical: 5, jobDone: false });
    expect(progress).toMatchObject({ state: "running", done: 1, pending: 1, queued: 1, instancesReturned: 4 });
    expect(s.hostRecord("h1")).toEqual(record({ consecutiveValid: 8, valid: 8 }));
    // A later connection of the host does not reset its live record.
    s.addVolunteer("x", { window: 1, host: "h1", account: "user:1", hostRecord: record() });
    expect(s.hostRecord("h1")).toMatchObject({ valid: 8 });
    s.audit();
  });

  it("completes the job at once when recovered results decide its last units", () => {
    const s = new Scheduler();
    const { progress, outcomes } = s.addJob(job("j", 2, { r: 2, q: 2 }), T0, {
      done: ["j-u1"],
      pending: [pendingResult("j-u0", "h1", "user:1", 5), pendingResult("j-u0", "h2", "user:2", 5), pendingResult("j-u1", "h3", "user:3", 0)],
    });
    expect(outcomes.map((o) => o.kind === "validated" && o.jobDone)).toEqual([true]);
    expect(progress).toMatchObject({ state: "completed", done: 2, pending: 0 });
    expect(s.stats()).toEqual({ volunteers: 0, queued: 0, leased: 0, runningJobs: 0, pendingResults: 0, barredJobs: 0 });
  });

  it("fails a job whose recovered results can no longer reach quorum", () => {
    const s = new Scheduler();
    const { progress, outcomes } = s.addJob(job("j", 2, { r: 2, q: 2, m: 2 }), T0, {
      pending: [pendingResult("j-u1", "h1", "user:1", 1), pendingResult("j-u1", "h2", "user:2", 2)],
    });
    expect(outcomes).toEqual([
      expect.objectContaining({ kind: "unit-failed", unitId: "j-u1", reason: "no quorum for unit 1: 2 results, 2 different answers (quorum 2, at most 2 instances)" }),
    ]);
    expect(progress.state).toBe("failed");
    expect(s.stats()).toEqual({ volunteers: 0, queued: 0, leased: 0, runningJobs: 0, pendingResults: 0, barredJobs: 0 });
  });

  it("rejects pending results of units not in the job", () => {
    const s = new Scheduler();
    expect(() => s.addJob(job("j", 1), T0, { pending: [pendingResult("k-u0", "h", "a", 1)] })).toThrow(/not in the job/);
    expect(s.jobState("j")).toBeUndefined();
  });
});

interface RandomizedConfig {
  /** R = Q = 2, no adaptive replication, cheaters share one account: nothing wrong may be validated. */
  cheatersOnOneAccount: boolean;
  tolerance: boolean;
}

function randomized(seed: number, cfg: RandomizedConfig) {
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T | undefined => (xs.length ? xs[Math.floor(rand() * xs.length)] : undefined);
  const s = new Scheduler({ random: mulberry32(seed + 1000), adaptiveMinValid: 3, spotCheckRate: 0.2 });
  let now = T0;
  // Hosts are installs; each belongs to one account. Cheating hosts all share one account.
  const hosts = Array.from({ length: 10 }, (_, i) => ({
    host: `h${i}`,
    account: i < 3 ? "acct-cheat" : `acct${i % 5}`,
    cheater: i < 3,
  }));
  const sockets = new Map<string, (typeof hosts)[number]>();
  const jobIds: string[] = [];
  const validatedUnits = new Set<string>();
  const failedJobs = new Set<string>();
  const completions = new Map<string, number>();
  const tally = { validated: 0, pending: 0, unitFailed: 0, invalid: 0, revoked: 0, alone: 0, expired: 0, errors: 0 };
  let nextJob = 0;
  let nextSock = 0;

  // The right answer for a unit, with a little floating-point noise when tolerated.
  const truth = (unitId: string) => ({ value: unitId.length * 1000 + Number(unitId.split("-u")[1]), unit: unitId });
  const answer = (unitId: string, cheater: boolean) => {
    // Cheaters collude: they all send the same wrong answer, which would win a quorum of
    // two if two of them ever got the same unit.
    if (cheater && rand() < 0.7) return { value: -truth(unitId).value, unit: unitId };
    const t = truth(unitId);
    return cfg.tolerance && rand() < 0.5 ? { ...t, value: t.value + 1e-10 * rand() } : t;
  };
  const handle = (o: ResultOutcome | ReturnType<Scheduler["addJob"]>["outcomes"][number], q: number) => {
    if (o.kind === "validated") {
      expect(validatedUnits.has(o.unitId)).toBe(false);
      validatedUnits.add(o.unitId);
      tally.validated++;
      tally.invalid += o.invalid.length;
      tally.revoked += o.revoked.length;
      if (o.valid.length === 1 && q > 1) tally.alone++;
      const owners = [...o.valid, ...o.invalid];
      expect(new Set(owners.map((r) => r.host)).size).toBe(owners.length);
      expect(new Set(owners.map((r) => r.account)).size).toBe(owners.length);
      if (cfg.cheatersOnOneAccount) {
        expect(o.valid.length).toBeGreaterThanOrEqual(2);
        expect(outputsAgree(o.canonical, truth(o.unitId), cfg.tolerance ? TOLERANT : EXACT)).toBe(true);
      }
      if (o.jobDone) completions.set(o.jobId, (completions.get(o.jobId) ?? 0) + 1);
    } else if (o.kind === "unit-failed") {
      tally.unitFailed++;
      failedJobs.add(o.jobId);
      expect(s.jobState(o.jobId)).toBe("failed");
      expect(s.jobError(o.jobId)).toBe(o.reason);
    } else if (o.kind === "pending") {
      tally.pending++;
    }
  };
  const quorumOf = new Map<string, number>();

  for (let step = 0; step < 6000; step++) {
    const r = rand();
    const sock = pick([...sockets.keys()]);
    if (r < 0.05 || jobIds.length === 0) {
      const id = `j${nextJob++}`;
      const n = Math.floor(rand() * 10);
      const q = cfg.cheatersOnOneAccount ? 2 : 1 + Math.floor(rand() * 3);
      const rr = cfg.cheatersOnOneAccount ? 2 : q + Math.floor(rand() * 2);
      const m = rr + Math.floor(rand() * 3);
      const spec = job(id, n, {
        r: rr,
        q,
        m,
        leaseMs: 200 + Math.floor(rand() * 1000),
        maxErrors: 1 + Math.floor(rand() * 3),
        adaptive: !cfg.cheatersOnOneAccount && rand() < 0.7,
        comparator: cfg.tolerance ? TOLERANT : EXACT,
      });
      quorumOf.set(id, q);
      const done = spec.units.filter(() => rand() < 0.1).map((u) => u.id);
      for (const u of done) validatedUnits.add(u);
      // Some units come back with one recovered result from an honest host.
      const pending = spec.units
        .filter((u) => !done.includes(u.id) && rand() < 0.15)
        .map((u) => {
          const h = pick(hosts.filter((x) => !x.cheater))!;
          return { unitId: u.id, taskId: `${u.id}#old`, host: h.host, account: h.account, output: truth(u.id), digest: digest(truth(u.id)) };
        });
      const { progress, outcomes } = s.addJob(spec, now, { done, pending });
      if (progress.state === "completed" && outcomes.length === 0) completions.set(id, 1);
      for (const o of outcomes) handle(o, q);
      jobIds.push(id);
    } else if (r < 0.1 || sockets.size === 0) {
      const key = `s${nextSock++}`;
      const h = pick(hosts)!;
      s.addVolunteer(key, { window: Math.floor(rand() * 5), host: h.host, account: h.account });
      sockets.set(key, h);
    } else if (r < 0.12) {
      const held = s.heldBy(sock!);
      expect(s.removeVolunteer(sock!, now).sort()).toEqual(held.sort());
      sockets.delete(sock!);
    } else if (r < 0.15) {
      s.setWindow(sock!, Math.floor(rand() * 6));
    } else if (r < 0.45) {
      const room = s.freeSlots(sock!);
      const max = rand() < 0.3 ? Math.floor(rand() * 3) : undefined;
      const got = s.leaseTasks(sock!, now, max);
      expect(got.length).toBeLessThanOrEqual(Math.min(room, max ?? Infinity));
      expect(new Set(got.map((t) => t.unitId)).size).toBe(got.length);
    } else if (r < 0.75) {
      const taskId = pick(s.heldBy(sock!));
      if (taskId !== undefined) {
        const unitId = s.task(taskId)!.unitId;
        const out = answer(unitId, sockets.get(sock!)!.cheater);
        const jobId = s.jobOf(taskId)!;
        const o = s.completeTask(sock!, taskId, out, digest(out), now);
        expect(o.kind).not.toBe("stale");
        handle(o, quorumOf.get(jobId)!);
        expect(s.completeTask(sock!, taskId, out, digest(out), now).kind).toBe("stale");
      }
    } else if (r < 0.79) {
      const taskId = pick(s.heldBy(sock!));
      if (taskId !== undefined) {
        const o = s.failTask(sock!, taskId, "boom", now);
        expect(o.kind).toBe("error-recorded");
        if (o.kind === "error-recorded" && o.jobFailed) failedJobs.add(o.jobId);
        tally.errors++;
      }
    } else if (r < 0.93) {
      now += Math.floor(rand() * 40);
      tally.expired += s.expireLeases(now).length;
    } else if (r < 0.97) {
      const id = pick(jobIds)!;
      if (s.jobState(id) === "running") {
        const live = s.progress(id)!.running;
        expect(s.cancelJob(id)).toHaveLength(live);
      } else expect(s.cancelJob(id)).toEqual([]);
    } else {
      const id = pick(jobIds)!;
      if (s.jobState(id) !== "running") {
        expect(s.removeJob(id)).toBe(true);
        jobIds.splice(jobIds.indexOf(id), 1);
      }
    }

    const problems: string[] = [];
    const check = (ok: boolean, what: string) => {
      if (!ok) problems.push(`step ${step}: ${what}`);
    };
    const stats = s.stats();
    let queued = 0;
    let leased = 0;
    let running = 0;
    let pendingUnits = 0;
    for (const id of jobIds) {
      const p = s.progress(id)!;
      leased += p.running;
      if (p.state === "running") {
        running++;
        queued += p.queued;
        pendingUnits += p.pending;
        check(p.done < p.total, `${id} running with every unit done`);
      } else {
        check(p.queued === 0 && p.running === 0 && p.pending === 0, `${id} ended with work`);
      }
      if (p.state === "completed") check(p.done === p.total, `${id} completed early`);
      check((completions.get(id) ?? 0) === (p.state === "completed" ? 1 : 0), `${id} completions`);
    }
    const heldIds = [...sockets.keys()].flatMap((k) => s.heldBy(k));
    check(stats.volunteers === sockets.size, "volunteers");
    check(stats.runningJobs === running, `runningJobs ${stats.runningJobs} vs ${running}`);
    check(stats.queued === queued, `queued ${stats.queued} vs ${queued}`);
    check(stats.leased === heldIds.length && stats.leased === leased, `leased ${stats.leased}`);
    check(stats.pendingResults >= pendingUnits, `pendingResults ${stats.pendingResults} < pending units ${pendingUnits}`);
    expect(problems).toEqual([]);
    s.audit();
  }
  return { tally, failedJobs, states: jobIds.map((j) => s.jobState(j)) };
}

describe("randomized operations with replication keep the counters true", () => {
  for (const seed of [1, 2, 3, 42]) {
    it(`cheaters on one account never get a wrong answer validated (seed ${seed})`, () => {
      const { tally, states } = randomized(seed, { cheatersOnOneAccount: true, tolerance: false });
      expect(tally.validated).toBeGreaterThan(100);
      expect(tally.pending).toBeGreaterThan(100);
      expect(tally.invalid).toBeGreaterThan(10);
      expect(tally.unitFailed).toBeGreaterThan(0);
      expect(tally.expired).toBeGreaterThan(50);
      expect(states).toContain("completed");
      expect(states).toContain("failed");
    });

    it(`random replication, adaptive and tolerance (seed ${seed})`, () => {
      const { tally, states } = randomized(seed, { cheatersOnOneAccount: false, tolerance: true });
      expect(tally.validated).toBeGreaterThan(100);
      expect(tally.pending).toBeGreaterThan(50);
      expect(tally.invalid).toBeGreaterThan(5);
      expect(tally.revoked).toBeGreaterThan(0);
      expect(tally.alone).toBeGreaterThan(0);
      expect(states).toContain("completed");
      expect(states).toContain("failed");
    });
  }
});

describe("errors under replication", () => {
  it("never gives a unit back to a host or account that reported an error on it", () => {
    const s = new Scheduler({ epoch: "e" });
    s.addJob(
      { id: "j", kernel: "k", params: {}, leaseMs: 1000, maxErrors: 3, units: [{ id: "u", index: 0, input: 0, work: 1 }], replication: { target: 2, quorum: 2, maxInstances: 6 } },
      0,
    );
    s.addVolunteer("bad", { window: 4, host: "hb", account: "ab" });
    s.addVolunteer("bad2", { window: 4, host: "hb2", account: "ab" }); // another host of the same account
    const [t] = s.leaseTasks("bad", 0);
    expect(s.failTask("bad", t!.taskId, "I refuse", 1)).toMatchObject({ kind: "error-recorded", requeued: true, jobFailed: false });
    expect(s.leaseTasks("bad", 2)).toEqual([]);
    expect(s.leaseTasks("bad2", 2)).toEqual([]);
    s.addVolunteer("good", { window: 4, host: "hg", account: "ag" });
    expect(s.leaseTasks("good", 3).map((x) => x.unitId)).toEqual(["u"]);
    expect(s.jobState("j")).toBe("running");
  });
});
