import { describe, it, expect } from "vitest";
import { Scheduler } from "../../server/scheduler/index.js";
import { DEFAULT_TRUST } from "../../server/scheduler/credibility.js";
import type { JobSpec, ReliabilityRecord, SchedulerOptions, TaskAssignment, ValidatedOutcome } from "../../server/scheduler/index.js";

// The owner's own machines, the owner's ways out of a quorum nobody online can form, and
// units that error on every volunteer there is.

const T0 = 1_700_000_000_000;
const OWNER = "user:alice";

function job(id: string, units: number, opts: { r?: number; q?: number; m?: number; owner?: string; maxErrors?: number; verifiable?: boolean } = {}): JobSpec {
  const r = opts.r ?? 2;
  return {
    id, kernel: "pi", params: {},
    units: Array.from({ length: units }, (_, i) => ({ id: `${id}-u${i}`, index: i, input: { i }, work: 10 })),
    leaseMs: 60_000, maxErrors: opts.maxErrors ?? 3,
    replication: { target: r, quorum: opts.q ?? r, maxInstances: opts.m ?? r + 3 },
    owner: opts.owner ?? OWNER, verifiable: opts.verifiable ?? false,
  };
}

function cluster(options: SchedulerOptions = {}) {
  const s = new Scheduler(options);
  return {
    s,
    join: (key: string, account: string, window = 4) => s.addVolunteer(key, { window, host: `h-${key}`, account }),
    lease: (key: string, max?: number) => s.leaseTasks(key, T0, max),
    done: (key: string, t: TaskAssignment, output: unknown) => s.completeTask(key, t.taskId, output, JSON.stringify(output), T0),
  };
}

const copy = (r: ReliabilityRecord | undefined) => r && { ...r };

describe("the owner's own hosts", () => {
  it("complete the owner's job alone, one copy per unit, with nobody's record changed", () => {
    const { s, join, lease, done } = cluster({ trust: DEFAULT_TRUST });
    join("mine", OWNER);
    s.addJob(job("j", 3, { verifiable: true }), T0);
    const tasks = lease("mine");
    expect(tasks.map((t) => t.unitId)).toEqual(["j-u0", "j-u1", "j-u2"]);
    const before = copy(s.hostRecord("h-mine"));
    const outcomes = tasks.map((t) => done("mine", t, 7));
    for (const o of outcomes) expect(o).toMatchObject({ kind: "validated", byOwner: true, invalid: [] });
    expect((outcomes[2] as ValidatedOutcome).jobDone).toBe(true);
    expect(s.jobState("j")).toBe("completed");
    // No spot-check, no credit, no streak: the owner's decisions prove nothing to the platform.
    expect(s.hostRecord("h-mine")).toEqual(before);
    s.audit();
  });

  it("decide a unit another account's result waits on: agreeing results stand, others are set aside uncharged", () => {
    const { s, join, lease, done } = cluster();
    join("bob", "user:bob");
    join("carol", "user:carol");
    s.addJob(job("j", 1, { r: 3, q: 3 }), T0);
    const [b] = lease("bob");
    const [c] = lease("carol");
    expect(done("bob", b!, 1)).toMatchObject({ kind: "pending" });
    expect(done("carol", c!, 2)).toMatchObject({ kind: "pending" });
    join("mine", OWNER);
    const [m] = lease("mine");
    expect(m!.unitId).toBe("j-u0");
    const o = done("mine", m!, 1) as ValidatedOutcome;
    expect(o).toMatchObject({ kind: "validated", byOwner: true, canonical: 1, jobDone: true });
    expect(o.valid.map((r) => r.account).sort()).toEqual([OWNER, "user:bob"]);
    expect(o.invalid.map((r) => r.account)).toEqual(["user:carol"]);
    expect(s.hostRecord("h-carol")).toMatchObject({ invalid: 0 });
    s.audit();
  });

  it("do not help anyone else's job: there a result still needs its quorum", () => {
    const { s, join, lease, done } = cluster();
    join("mine", OWNER);
    s.addJob(job("j", 1, { owner: "user:bob" }), T0);
    const [t] = lease("mine");
    expect(done("mine", t!, 1)).toMatchObject({ kind: "pending" });
    s.audit();
  });
});

describe("a quorum the volunteers online cannot form", () => {
  function waiting() {
    const c = cluster();
    c.join("bob", "user:bob");
    c.s.addJob(job("j", 4), T0);
    for (const t of c.lease("bob")) c.done("bob", t, 5);
    return c;
  }

  it("is reported by sweep(), by job and by host", () => {
    const { s, join } = waiting();
    const report = s.sweep(T0, 1000);
    expect(report.waits.get("j")).toEqual({ units: 4, results: 4 });
    expect(report.hostWaits.get("h-bob")).toBe(4);
    // A volunteer of another account comes: it can confirm them, so nothing waits in vain.
    join("carol", "user:carol");
    expect(s.sweep(T0, 1000).waits.size).toBe(0);
  });

  it("ends when the owner accepts the unconfirmed results", () => {
    const { s } = waiting();
    const outcomes = s.acceptPending("j");
    expect(outcomes).toHaveLength(4);
    for (const o of outcomes) expect(o).toMatchObject({ kind: "validated", byOwner: true, canonical: 5 });
    expect(s.jobState("j")).toBe("completed");
    expect(s.hostRecord("h-bob")).toMatchObject({ valid: 0 });
    s.audit();
  });

  it("ends when the owner lowers the replication, units with enough results decided at once", () => {
    const { s, lease, done } = cluster();
    s.addVolunteer("bob", { window: 2, host: "h-bob", account: "user:bob" });
    s.addJob(job("j", 4), T0);
    const first = lease("bob");
    for (const t of first) done("bob", t, 5);
    const outcomes = s.setReplication("j", { target: 1, quorum: 1, maxInstances: 5 });
    expect(outcomes.map((o) => o.kind)).toEqual(["validated", "validated"]);
    expect(s.progress("j")).toMatchObject({ done: 2, queued: 2 });
    // The other units now need one copy each, and bob may compute them.
    const rest = lease("bob");
    expect(rest).toHaveLength(2);
    for (const t of rest) expect(done("bob", t, 5)).toMatchObject({ kind: "validated" });
    expect(s.jobState("j")).toBe("completed");
    s.audit();
  });

  it("refuses a replication that makes no sense", () => {
    const { s } = waiting();
    expect(() => s.setReplication("j", { target: 1, quorum: 2, maxInstances: 5 })).toThrow(RangeError);
  });
});

describe("a unit that errors everywhere", () => {
  it("fails its job after maxErrors distinct hosts, with the program's message", () => {
    const { s, join, lease } = cluster();
    for (const k of ["a", "b", "c"]) join(k, `user:${k}`, 1);
    s.addJob(job("j", 1, { r: 1, q: 1 }), T0);
    let last;
    for (const k of ["a", "b", "c"]) {
      const [t] = lease(k);
      expect(t?.unitId).toBe("j-u0");
      last = s.failTask(k, t!.taskId, "TypeError: x is not a function", T0);
    }
    expect(last).toMatchObject({ jobFailed: true });
    expect(s.jobError("j")).toBe("TypeError: x is not a function (unit 0 failed on 3 hosts)");
  });

  it("never goes back to a host it errored on, and fails after a while when no other may take it", () => {
    const { s, join, lease } = cluster();
    join("a", "user:a", 2);
    s.addJob(job("j", 1, { r: 1, q: 1 }), T0);
    const [t] = lease("a");
    expect(s.failTask("a", t!.taskId, "Error: boom", T0)).toMatchObject({ jobFailed: false, requeued: true });
    expect(lease("a")).toEqual([]);
    expect(s.sweep(T0, 5000).failed).toEqual([]);
    expect(s.sweep(T0 + 4999, 5000).failed).toEqual([]);
    const { failed } = s.sweep(T0 + 5000, 5000);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.reason).toBe("Error: boom (unit 0 failed on 1 host), and no other volunteer online may take it");
    expect(s.jobState("j")).toBe("failed");
    s.audit();
  });

  it("waits again when a volunteer who may take it comes", () => {
    const { s, join, lease } = cluster();
    join("a", "user:a", 2);
    s.addJob(job("j", 1, { r: 1, q: 1 }), T0);
    const [t] = lease("a");
    s.failTask("a", t!.taskId, "Error: boom", T0);
    s.sweep(T0, 5000);
    join("b", "user:b", 2);
    expect(s.sweep(T0 + 6000, 5000).failed).toEqual([]);
    expect(s.jobState("j")).toBe("running");
  });
});
