import { describe, it, expect } from "vitest";
import { Scheduler } from "../../server/scheduler/index.js";
import type { JobSpec, TaskAssignment, VolunteerId, VolunteerInfo } from "../../server/scheduler/index.js";
import { Deque } from "../../server/scheduler/deque.js";
import { LeaseHeap } from "../../server/scheduler/leaseHeap.js";
import { seededRandom as mulberry32 } from "../helpers/random";

const T0 = 1_700_000_000_000;

function job(id: string, units: number, opts: Partial<Omit<JobSpec, "id" | "units">> = {}): JobSpec {
  return {
    id,
    kernel: opts.kernel ?? "pi",
    params: opts.params ?? { job: id },
    units: Array.from({ length: units }, (_, i) => ({ id: `${id}-u${i}`, index: i, input: { i }, work: 10 + i })),
    leaseMs: opts.leaseMs ?? 1000,
    maxErrors: opts.maxErrors ?? 3,
    // These tests cover dispatch without replication: one instance per unit, accepted at once.
    replication: opts.replication ?? { target: 1, quorum: 1, maxInstances: 100 },
    adaptive: opts.adaptive ?? false,
    comparator: opts.comparator ?? { kind: "exact" },
  };
}

/** A socket that is its own host and account. */
function conn(id: string, window: number): VolunteerInfo {
  return { window, host: `host-${id}`, account: `anon:${id}` };
}

function withVolunteers(ids: string[], window = 4): Scheduler {
  const s = new Scheduler();
  for (const id of ids) s.addVolunteer(id, conn(id, window));
  return s;
}

const jobsOf = (tasks: TaskAssignment[]) => tasks.map((t) => t.jobId);
const unitsOf = (tasks: TaskAssignment[]) => tasks.map((t) => t.unitId);

/** Everything observable, to prove that an operation changed nothing. */
function observe(s: Scheduler, jobIds: string[], volunteerIds: string[]) {
  return {
    stats: s.stats(),
    progress: jobIds.map((j) => s.progress(j)),
    held: volunteerIds.map((v) => s.heldBy(v)),
    next: s.nextDeadline(),
  };
}

describe("addJob", () => {
  it("queues units in index order even when the spec lists them shuffled", () => {
    const s = withVolunteers(["v"], 10);
    const spec = job("a", 5);
    spec.units = [spec.units[3]!, spec.units[0]!, spec.units[4]!, spec.units[1]!, spec.units[2]!];
    s.addJob(spec, T0);
    expect(s.leaseTasks("v", T0).map((t) => t.index)).toEqual([0, 1, 2, 3, 4]);
  });

  it("reports the new job as running with every unit queued", () => {
    const s = new Scheduler();
    expect(s.addJob(job("a", 4), T0)).toEqual({
      progress: { jobId: "a", state: "running", total: 4, queued: 4, running: 0, done: 0, pending: 0, instancesReturned: 0 },
      outcomes: [],
    });
    expect(s.stats()).toEqual({ volunteers: 0, queued: 4, leased: 0, runningJobs: 1, pendingResults: 0, barredJobs: 0 });
  });

  it("rejects a duplicate job id, duplicate unit ids and bad limits", () => {
    const s = new Scheduler();
    s.addJob(job("a", 2), T0);
    expect(() => s.addJob(job("a", 3), T0)).toThrow(/already exists/);
    const dup = job("b", 2);
    dup.units[1] = { ...dup.units[1]!, id: dup.units[0]!.id };
    expect(() => s.addJob(dup, T0)).toThrow(/duplicate unit/);
    expect(() => s.addJob(job("c", 1, { leaseMs: 0 }), T0)).toThrow(RangeError);
    expect(() => s.addJob(job("d", 1, { maxErrors: 0 }), T0)).toThrow(RangeError);
    // Failed registrations leave no trace.
    expect(s.stats()).toEqual({ volunteers: 0, queued: 2, leased: 0, runningJobs: 1, pendingResults: 0, barredJobs: 0 });
    expect(s.jobState("b")).toBeUndefined();
  });

  it("skips units already done (restart recovery) and completes the job with the rest", () => {
    const s = withVolunteers(["v"], 10);
    const { progress: p } = s.addJob(job("a", 5), T0, { done: ["a-u1", "a-u3"] });
    expect(p).toMatchObject({ state: "running", total: 5, queued: 3, done: 2 });
    const tasks = s.leaseTasks("v", T0);
    expect(unitsOf(tasks)).toEqual(["a-u0", "a-u2", "a-u4"]);
    const outcomes = tasks.map((t) => s.completeTask("v", t.taskId, t.index, "d", T0));
    expect(outcomes.map((o) => o.kind === "validated" && o.jobDone)).toEqual([false, false, true]);
    expect(s.jobState("a")).toBe("completed");
  });

  it("marks a job whose units are all done as completed at once", () => {
    const s = withVolunteers(["v"], 10);
    const { progress: p } = s.addJob(job("a", 3), T0, { done: ["a-u0", "a-u1", "a-u2"] });
    expect(p).toEqual({ jobId: "a", state: "completed", total: 3, queued: 0, running: 0, done: 3, pending: 0, instancesReturned: 0 });
    expect(s.stats()).toEqual({ volunteers: 1, queued: 0, leased: 0, runningJobs: 0, pendingResults: 0, barredJobs: 0 });
    expect(s.leaseTasks("v", T0)).toEqual([]);
    expect(s.addJob(job("empty", 0), T0).progress.state).toBe("completed");
  });

  it("rejects done ids that are not units of the job", () => {
    const s = new Scheduler();
    expect(() => s.addJob(job("a", 2), T0, { done: ["b-u0"] })).toThrow(/not in the job/);
    // The pre-replication form, a bare list of done units, still works.
    expect(s.addJob(job("a", 2), T0, new Set(["a-u1"])).progress).toMatchObject({ queued: 1, done: 1 });
  });
});

describe("volunteers", () => {
  it("rejects re-adding a connected volunteer and invalid windows", () => {
    const s = withVolunteers(["v"]);
    expect(() => s.addVolunteer("v", conn("v", 2))).toThrow(/already connected/);
    expect(() => s.addVolunteer("w", conn("w", -1))).toThrow(RangeError);
    expect(() => s.addVolunteer("w", conn("w", 1.5))).toThrow(RangeError);
    expect(() => s.setWindow("v", Number.NaN)).toThrow(RangeError);
    expect(() => s.setWindow("nobody", 3)).toThrow(/unknown volunteer/);
    expect(s.stats().volunteers).toBe(1);
  });

  it("gives an unknown volunteer nothing and leaves the queue alone", () => {
    const s = withVolunteers(["v"]);
    s.addJob(job("a", 3), T0);
    expect(s.leaseTasks("ghost", T0)).toEqual([]);
    expect(s.heldBy("ghost")).toEqual([]);
    expect(s.freeSlots("ghost")).toBe(0);
    expect(s.stats()).toMatchObject({ queued: 3, leased: 0 });
  });

  it("gives a volunteer with window 0 nothing until its window opens", () => {
    const s = withVolunteers(["v"], 0);
    s.addJob(job("a", 3), T0);
    expect(s.leaseTasks("v", T0)).toEqual([]);
    expect(s.hungryVolunteers()).toEqual([]);
    s.setWindow("v", 2);
    expect(s.hungryVolunteers()).toEqual(["v"]);
    expect(s.leaseTasks("v", T0)).toHaveLength(2);
    expect(s.hungryVolunteers()).toEqual([]);
  });

  it("keeps leases when the window shrinks below what is held, but gives no more", () => {
    const s = withVolunteers(["v"], 4);
    s.addJob(job("a", 10), T0);
    const tasks = s.leaseTasks("v", T0);
    s.setWindow("v", 1);
    expect(s.heldBy("v")).toHaveLength(4);
    expect(s.leaseTasks("v", T0)).toEqual([]);
    for (const t of tasks.slice(0, 3)) s.completeTask("v", t.taskId, null, "d", T0);
    expect(s.leaseTasks("v", T0)).toEqual([]); // holds 1 = window
    s.completeTask("v", tasks[3]!.taskId, null, "d", T0);
    expect(s.leaseTasks("v", T0)).toHaveLength(1);
  });

  it("lists hungry volunteers in the order they became hungry", () => {
    const s = withVolunteers(["a", "b", "c"], 1);
    s.addJob(job("j", 10), T0);
    const [ta] = s.leaseTasks("a", T0);
    s.leaseTasks("b", T0);
    expect(s.hungryVolunteers()).toEqual(["c"]);
    s.completeTask("a", ta!.taskId, null, "d", T0);
    expect(s.hungryVolunteers()).toEqual(["c", "a"]);
    s.removeVolunteer("c", T0);
    expect(s.hungryVolunteers()).toEqual(["a"]);
  });
});

describe("leaseTasks", () => {
  it("fills the window and never exceeds it", () => {
    const s = withVolunteers(["v"], 3);
    s.addJob(job("a", 10), T0);
    const first = s.leaseTasks("v", T0);
    expect(first).toHaveLength(3);
    expect(s.leaseTasks("v", T0)).toEqual([]);
    expect(s.heldBy("v")).toEqual(first.map((t) => t.taskId));
    s.completeTask("v", first[0]!.taskId, 1, "d", T0);
    const refill = s.leaseTasks("v", T0);
    expect(refill).toHaveLength(1);
    expect(s.heldBy("v")).toHaveLength(3);
    expect(s.stats()).toMatchObject({ queued: 6, leased: 3 });
  });

  it("respects max and stops when the queue runs dry", () => {
    const s = withVolunteers(["v"], 10);
    s.addJob(job("a", 4), T0);
    expect(s.leaseTasks("v", T0, 0)).toEqual([]);
    expect(s.leaseTasks("v", T0, -2)).toEqual([]);
    expect(s.leaseTasks("v", T0, 2)).toHaveLength(2);
    expect(s.leaseTasks("v", T0, 100)).toHaveLength(2);
    expect(s.leaseTasks("v", T0)).toEqual([]);
    expect(s.freeSlots("v")).toBe(6);
  });

  it("builds assignments from the job and unit, with deadline = now + leaseMs", () => {
    const s = withVolunteers(["v"], 2);
    const spec = job("a", 2, { leaseMs: 5000, kernel: "mandelbrot", params: { w: 64 } });
    s.addJob(spec, T0);
    const [t] = s.leaseTasks("v", T0 + 7, 1);
    expect(t).toMatchObject({
      jobId: "a",
      unitId: "a-u0",
      index: 0,
      kernel: "mandelbrot",
      params: { w: 64 },
      input: { i: 0 },
      deadline: T0 + 7 + 5000,
    });
    expect(s.task(t!.taskId)).toEqual({
      taskId: t!.taskId,
      jobId: "a",
      unitId: "a-u0",
      index: 0,
      volunteerId: "v",
      host: "host-v",
      account: "anon:v",
      deadline: T0 + 5007,
    });
    expect(s.jobOf(t!.taskId)).toBe("a");
  });

  it("gives every lease a fresh task id, also when a unit is leased again", () => {
    const s = withVolunteers(["v", "w"], 5);
    s.addJob(job("a", 5), T0);
    const ids = new Set(s.leaseTasks("v", T0).map((t) => t.taskId));
    expect(ids.size).toBe(5);
    s.removeVolunteer("v", T0);
    for (const t of s.leaseTasks("w", T0)) {
      expect(ids.has(t.taskId)).toBe(false);
      ids.add(t.taskId);
    }
    expect(ids.size).toBe(10);
  });

  it("puts the epoch into task ids so ids differ across restarts", () => {
    const before = new Scheduler({ epoch: "e1" });
    const after = new Scheduler({ epoch: "e2" });
    for (const s of [before, after]) {
      s.addVolunteer("v", conn("v", 1));
      s.addJob(job("a", 1), T0);
    }
    const [t1] = before.leaseTasks("v", T0);
    const [t2] = after.leaseTasks("v", T0);
    expect(t1!.taskId).toContain("e1");
    expect(t1!.taskId).not.toBe(t2!.taskId);
    expect(after.completeTask("v", t1!.taskId, 0, "d", T0)).toEqual({ kind: "stale", reason: "unknown-task" });
  });
});

describe("fair dispatch", () => {
  it("alternates between a big job and a small one submitted later", () => {
    const s = withVolunteers(["v"], 8);
    s.addJob(job("big", 100), T0);
    s.addJob(job("small", 3), T0 + 1);
    expect(jobsOf(s.leaseTasks("v", T0 + 2))).toEqual(["big", "small", "big", "small", "big", "small", "big", "big"]);
    expect(s.progress("small")).toMatchObject({ queued: 0, running: 3 });
  });

  it("rotates over jobs in submission order across volunteers and calls", () => {
    const s = withVolunteers(["v1", "v2", "v3"], 10);
    s.addJob(job("a", 10), T0);
    s.addJob(job("b", 10), T0);
    s.addJob(job("c", 10), T0);
    expect(jobsOf(s.leaseTasks("v1", T0, 1))).toEqual(["a"]);
    expect(jobsOf(s.leaseTasks("v2", T0, 1))).toEqual(["b"]);
    expect(jobsOf(s.leaseTasks("v3", T0, 4))).toEqual(["c", "a", "b", "c"]);
  });

  it("lets a job whose queue emptied rejoin at its submission place", () => {
    const s = withVolunteers(["v", "w"], 20);
    s.addJob(job("a", 10), T0);
    s.addJob(job("b", 1), T0);
    s.addJob(job("c", 10), T0);
    const first = s.leaseTasks("v", T0, 5);
    expect(jobsOf(first)).toEqual(["a", "b", "c", "a", "c"]);
    const bTask = first.find((t) => t.jobId === "b")!;
    expect(s.failTask("v", bTask.taskId, "boom", T0)).toMatchObject({ kind: "error-recorded", requeued: true });
    // The host it errored on does not get it again; another does, in b's place.
    expect(jobsOf(s.leaseTasks("v", T0, 2))).toEqual(["a", "c"]);
    expect(jobsOf(s.leaseTasks("w", T0, 3))).toEqual(["a", "b", "c"]);
  });

  it("hands out a newly submitted job's units within one round", () => {
    const s = withVolunteers(["v"], 100);
    s.addJob(job("a", 50), T0);
    s.addJob(job("b", 50), T0);
    s.leaseTasks("v", T0, 7);
    s.addJob(job("late", 2), T0);
    expect(jobsOf(s.leaseTasks("v", T0, 6)).filter((j) => j === "late")).toHaveLength(2);
  });
});

describe("completeTask", () => {
  it("accepts a result with the unit's details and frees the lease", () => {
    const s = withVolunteers(["v"], 1);
    s.addJob(job("a", 3), T0);
    const [t] = s.leaseTasks("v", T0);
    expect(s.completeTask("v", t!.taskId, { pi: 3.14 }, "d", T0 + 10)).toEqual({
      kind: "validated",
      jobId: "a",
      unitId: "a-u0",
      index: 0,
      work: 10,
      taskId: t!.taskId,
      canonical: { pi: 3.14 },
      valid: [{ taskId: t!.taskId, volunteer: "v", host: "host-v", account: "anon:v", output: { pi: 3.14 }, digest: "d", turnaroundMs: 10 }],
      invalid: [],
      revoked: [],
      jobDone: false,
    });
    expect(s.heldBy("v")).toEqual([]);
    expect(s.progress("a")).toMatchObject({ queued: 2, running: 0, done: 1 });
    expect(s.task(t!.taskId)).toBeUndefined();
  });

  it("completes the job exactly once, when the last unit is accepted", () => {
    const s = withVolunteers(["v", "w"], 2);
    s.addJob(job("a", 3), T0);
    s.addJob(job("other", 5), T0);
    const mine = [...s.leaseTasks("v", T0), ...s.leaseTasks("w", T0)].filter((t) => t.jobId === "a");
    const holder = (id: string) => (s.heldBy("v").includes(id) ? "v" : "w");
    const results = [];
    for (const t of mine) {
      expect(s.jobState("a")).toBe("running");
      results.push(s.completeTask(holder(t.taskId), t.taskId, t.index, "d", T0));
    }
    // Leasing fills 4 slots from a,other,a,other: a has one unit left to lease.
    expect(mine).toHaveLength(2);
    expect(results.map((r) => r.kind === "validated" && r.jobDone)).toEqual([false, false]);
    const [last] = s.leaseTasks("v", T0, 1);
    expect(last!.jobId).toBe("a");
    const before = s.stats().runningJobs;
    expect(s.completeTask("v", last!.taskId, 2, "d", T0)).toMatchObject({ kind: "validated", jobDone: true });
    expect(s.jobState("a")).toBe("completed");
    expect(s.progress("a")).toEqual({
      jobId: "a", state: "completed", total: 3, queued: 0, running: 0, done: 3, pending: 0, instancesReturned: 3,
    });
    expect(s.stats().runningJobs).toBe(before - 1);
    // The duplicate is stale and does not complete anything again.
    expect(s.completeTask("v", last!.taskId, 2, "d", T0)).toEqual({ kind: "stale", reason: "unknown-task" });
    expect(s.stats().runningJobs).toBe(before - 1);
    expect(s.progress("a")!.done).toBe(3);
  });

  it("never dispatches a completed job's units", () => {
    const s = withVolunteers(["v"], 5);
    s.addJob(job("a", 1), T0);
    const [t] = s.leaseTasks("v", T0);
    s.completeTask("v", t!.taskId, 0, "d", T0);
    s.addJob(job("b", 2), T0);
    expect(jobsOf(s.leaseTasks("v", T0))).toEqual(["b", "b"]);
  });

  it("accepts a result past the deadline as long as the lease has not been expired", () => {
    const s = withVolunteers(["v"], 1);
    s.addJob(job("a", 1, { leaseMs: 100 }), T0);
    const [t] = s.leaseTasks("v", T0);
    expect(s.completeTask("v", t!.taskId, 0, "d", T0 + 5000)).toMatchObject({ kind: "validated", jobDone: true });
    expect(s.expireLeases(T0 + 5000)).toEqual([]);
  });
});

describe("stale results change nothing", () => {
  function setup() {
    const s = withVolunteers(["v", "w"], 2);
    s.addJob(job("a", 5), T0);
    const tv = s.leaseTasks("v", T0);
    const tw = s.leaseTasks("w", T0);
    return { s, tv, tw, snap: () => observe(s, ["a"], ["v", "w"]) };
  }

  it("rejects an unknown task id", () => {
    const { s, snap } = setup();
    const before = snap();
    expect(s.completeTask("v", "no-such-task", 1, "d", T0)).toEqual({ kind: "stale", reason: "unknown-task" });
    expect(s.failTask("v", "no-such-task", "x", T0)).toEqual({ kind: "stale", reason: "unknown-task" });
    expect(snap()).toEqual(before);
    expect(s.jobError("a")).toBeUndefined();
  });

  it("rejects a result from a volunteer that does not hold the task", () => {
    const { s, tv, snap } = setup();
    const before = snap();
    expect(s.completeTask("w", tv[0]!.taskId, 1, "d", T0)).toEqual({ kind: "stale", reason: "not-holder" });
    expect(s.failTask("w", tv[0]!.taskId, "x", T0)).toEqual({ kind: "stale", reason: "not-holder" });
    expect(s.completeTask("ghost", tv[0]!.taskId, 1, "d", T0)).toEqual({ kind: "stale", reason: "not-holder" });
    expect(snap()).toEqual(before);
    expect(s.jobError("a")).toBeUndefined();
    // The rightful holder still can.
    expect(s.completeTask("v", tv[0]!.taskId, 1, "d", T0).kind).toBe("validated");
  });

  it("rejects a duplicate result", () => {
    const { s, tv, snap } = setup();
    expect(s.completeTask("v", tv[0]!.taskId, 1, "d", T0).kind).toBe("validated");
    const before = snap();
    expect(s.completeTask("v", tv[0]!.taskId, 1, "d", T0)).toEqual({ kind: "stale", reason: "unknown-task" });
    expect(s.failTask("v", tv[0]!.taskId, "late error", T0)).toEqual({ kind: "stale", reason: "unknown-task" });
    expect(snap()).toEqual(before);
    expect(s.progress("a")!.done).toBe(1);
  });
});

describe("lease expiry", () => {
  it("re-queues an expired unit at the front, the late result is stale, the new holder's accepted", () => {
    const s = withVolunteers(["slow", "fast"], 1);
    s.addJob(job("a", 3, { leaseMs: 1000 }), T0);
    const [old] = s.leaseTasks("slow", T0);
    expect(s.expireLeases(T0 + 999)).toEqual([]);
    expect(s.expireLeases(T0 + 1000)).toEqual([{ taskId: old!.taskId, volunteerId: "slow", jobId: "a", unitId: "a-u0" }]);
    expect(s.heldBy("slow")).toEqual([]);
    expect(s.progress("a")).toMatchObject({ queued: 3, running: 0, done: 0 });

    const [again] = s.leaseTasks("fast", T0 + 1001);
    expect(again!.unitId).toBe("a-u0"); // front of the queue, ahead of u1 and u2
    expect(again!.taskId).not.toBe(old!.taskId);
    expect(again!.deadline).toBe(T0 + 2001);

    const before = observe(s, ["a"], ["slow", "fast"]);
    expect(s.completeTask("slow", old!.taskId, "late", "d", T0 + 1002)).toEqual({ kind: "stale", reason: "unknown-task" });
    expect(observe(s, ["a"], ["slow", "fast"])).toEqual(before);
    expect(s.completeTask("fast", again!.taskId, "ok", "d", T0 + 1003)).toMatchObject({ kind: "validated", unitId: "a-u0" });
  });

  it("expires exactly the leases due, earliest first, and frees their windows", () => {
    const s = withVolunteers(["v"], 10);
    s.addJob(job("long", 3, { leaseMs: 5000 }), T0);
    s.addJob(job("short", 3, { leaseMs: 1000 }), T0);
    const tasks = s.leaseTasks("v", T0);
    const late = s.leaseTasks("v", T0 + 10); // nothing left to lease
    expect(late).toEqual([]);
    expect(tasks).toHaveLength(6);
    const done = tasks.find((t) => t.jobId === "short")!;
    s.completeTask("v", done.taskId, 0, "d", T0);

    const expired = s.expireLeases(T0 + 1000);
    expect(expired.map((e) => e.jobId)).toEqual(["short", "short"]);
    expect(expired.map((e) => e.taskId)).not.toContain(done.taskId);
    expect(s.freeSlots("v")).toBe(7); // 10 - (6 leased - 1 completed - 2 expired)
    expect(s.expireLeases(T0 + 4999)).toEqual([]);
    expect(s.expireLeases(T0 + 100_000).map((e) => e.jobId)).toEqual(["long", "long", "long"]);
    expect(s.stats()).toMatchObject({ queued: 5, leased: 0 });
  });

  it("keeps the unit that expired first at the front of the queue", () => {
    const s = withVolunteers(["v", "w"], 3);
    s.addJob(job("a", 6, { leaseMs: 1000 }), T0);
    const t0 = s.leaseTasks("v", T0, 1);
    const t1 = s.leaseTasks("v", T0 + 10, 1);
    const t2 = s.leaseTasks("v", T0 + 20, 1);
    expect(s.expireLeases(T0 + 2000).map((e) => e.unitId)).toEqual(["a-u0", "a-u1", "a-u2"]);
    expect(unitsOf(s.leaseTasks("w", T0 + 2000))).toEqual(unitsOf([...t0, ...t1, ...t2]));
  });

  it("handles many leases and keeps working after a flood of completions", () => {
    const s = withVolunteers(["v"], 50_000);
    s.addJob(job("a", 50_000, { leaseMs: 1000 }), T0);
    const tasks = s.leaseTasks("v", T0);
    // Complete all but every 1000th; the heap must drop the completed entries lazily.
    for (let i = 0; i < tasks.length; i++) if (i % 1000 !== 0) s.completeTask("v", tasks[i]!.taskId, i, "d", T0);
    expect(s.nextDeadline()).toBe(T0 + 1000);
    const expired = s.expireLeases(T0 + 1000);
    expect(expired).toHaveLength(50);
    expect(new Set(expired.map((e) => e.taskId))).toEqual(new Set(tasks.filter((_, i) => i % 1000 === 0).map((t) => t.taskId)));
    expect(s.nextDeadline()).toBeUndefined();
    s.audit();
  });
});

describe("nextDeadline", () => {
  it("tracks the earliest live lease through lease, completion, expiry and cancel", () => {
    const s = withVolunteers(["v"], 10);
    expect(s.nextDeadline()).toBeUndefined();
    s.addJob(job("slow", 2, { leaseMs: 3000 }), T0);
    s.addJob(job("quick", 2, { leaseMs: 1000 }), T0);
    const [a, b] = s.leaseTasks("v", T0, 2); // slow-u0, quick-u0
    expect(s.nextDeadline()).toBe(T0 + 1000);
    s.completeTask("v", b!.taskId, 0, "d", T0);
    expect(s.nextDeadline()).toBe(T0 + 3000);
    const [c] = s.leaseTasks("v", T0 + 500, 1); // slow-u1
    const [d] = s.leaseTasks("v", T0 + 600, 1); // quick-u1
    expect(c!.jobId).toBe("slow");
    expect(d!.deadline).toBe(T0 + 1600);
    expect(s.nextDeadline()).toBe(T0 + 1600);
    expect(s.expireLeases(T0 + 1600).map((e) => e.taskId)).toEqual([d!.taskId]);
    expect(s.nextDeadline()).toBe(T0 + 3000);
    s.completeTask("v", a!.taskId, 0, "d", T0);
    expect(s.nextDeadline()).toBe(T0 + 3500);
    s.cancelJob("slow");
    expect(s.nextDeadline()).toBeUndefined();
  });
});

describe("removeVolunteer", () => {
  it("releases its leases and re-queues them at the front, in their original order", () => {
    const s = withVolunteers(["v", "w"], 3);
    s.addJob(job("a", 10), T0);
    const held = s.leaseTasks("v", T0);
    expect(s.removeVolunteer("v", T0 + 5)).toEqual(held.map((t) => t.taskId));
    expect(s.stats()).toEqual({ volunteers: 1, queued: 10, leased: 0, runningJobs: 1, pendingResults: 0, barredJobs: 0 });
    expect(unitsOf(s.leaseTasks("w", T0 + 6))).toEqual(["a-u0", "a-u1", "a-u2"]);
  });

  it("makes the departed volunteer's results stale and lets it reconnect afresh", () => {
    const s = withVolunteers(["v"], 2);
    s.addJob(job("a", 4), T0);
    const held = s.leaseTasks("v", T0);
    s.removeVolunteer("v", T0);
    expect(s.removeVolunteer("v", T0)).toEqual([]);
    expect(s.completeTask("v", held[0]!.taskId, 0, "d", T0)).toEqual({ kind: "stale", reason: "unknown-task" });
    expect(s.nextDeadline()).toBeUndefined();
    s.addVolunteer("v", conn("v", 1));
    expect(s.heldBy("v")).toEqual([]);
    expect(unitsOf(s.leaseTasks("v", T0))).toEqual(["a-u0"]);
    expect(s.progress("a")).toMatchObject({ queued: 3, running: 1, done: 0 });
  });
});

describe("cancelJob", () => {
  it("stops dispatch, frees the leases and makes later results stale", () => {
    const s = withVolunteers(["v", "w"], 2);
    s.addJob(job("a", 10), T0);
    s.addJob(job("b", 10), T0);
    const tv = s.leaseTasks("v", T0); // a, b
    const tw = s.leaseTasks("w", T0); // a, b
    const aTasks = [...tv, ...tw].filter((t) => t.jobId === "a");
    const dropped = s.cancelJob("a");
    expect(dropped).toEqual(
      expect.arrayContaining(aTasks.map((t) => ({ taskId: t.taskId, jobId: "a", unitId: t.unitId, volunteerId: expect.any(String) }))),
    );
    expect(dropped).toHaveLength(2);
    expect(dropped.find((d) => d.taskId === tw[0]!.taskId)?.volunteerId).toBe("w");
    expect(s.jobState("a")).toBe("cancelled");
    expect(s.progress("a")).toMatchObject({ state: "cancelled", queued: 0, running: 0, done: 0 });
    expect(s.stats()).toEqual({ volunteers: 2, queued: 8, leased: 2, runningJobs: 1, pendingResults: 0, barredJobs: 0 });
    expect(jobsOf(s.leaseTasks("v", T0))).toEqual(["b"]);
    for (const t of aTasks) {
      const holder = tv.includes(t) ? "v" : "w";
      expect(s.completeTask(holder, t.taskId, 0, "d", T0)).toEqual({ kind: "stale", reason: "unknown-task" });
    }
    expect(s.progress("a")!.done).toBe(0);
  });

  it("is a no-op for an ended job and throws for an unknown one", () => {
    const s = withVolunteers(["v"], 1);
    s.addJob(job("a", 1), T0);
    const [t] = s.leaseTasks("v", T0);
    s.completeTask("v", t!.taskId, 0, "d", T0);
    expect(s.cancelJob("a")).toEqual([]);
    expect(s.jobState("a")).toBe("completed");
    s.addJob(job("b", 3), T0);
    s.cancelJob("b");
    const before = s.stats();
    expect(s.cancelJob("b")).toEqual([]);
    expect(s.stats()).toEqual(before);
    expect(() => s.cancelJob("nope")).toThrow(/unknown job/);
  });

  it("does not re-queue a cancelled job's units when its volunteer leaves or its lease expires", () => {
    const s = withVolunteers(["v"], 2);
    s.addJob(job("a", 4, { leaseMs: 10 }), T0);
    s.leaseTasks("v", T0);
    s.cancelJob("a");
    expect(s.removeVolunteer("v", T0)).toEqual([]);
    expect(s.expireLeases(T0 + 100)).toEqual([]);
    expect(s.stats()).toEqual({ volunteers: 0, queued: 0, leased: 0, runningJobs: 0, pendingResults: 0, barredJobs: 0 });
  });
});

describe("failTask", () => {
  it("records the error and re-queues the unit at the front", () => {
    const s = withVolunteers(["v"], 2);
    s.addJob(job("a", 5, { maxErrors: 3 }), T0);
    const [t] = s.leaseTasks("v", T0);
    expect(s.failTask("v", t!.taskId, "RangeError: bad input", T0)).toEqual({
      kind: "error-recorded",
      jobId: "a",
      unitId: "a-u0",
      taskId: t!.taskId,
      host: "host-v",
      account: "anon:v",
      requeued: true,
      jobFailed: false,
      dropped: [],
    });
    expect(s.jobError("a")).toBe("RangeError: bad input (unit 0 failed on 1 host)");
    expect(s.progress("a")).toMatchObject({ state: "running", queued: 4, running: 1, done: 0 });
    // a-u0 is back ahead of a-u2, for another host: the one it errored on does not get it again.
    expect(unitsOf(s.leaseTasks("v", T0))).toEqual(["a-u2"]);
    s.addVolunteer("w", { window: 2, host: "host-w", account: "anon:w" });
    expect(unitsOf(s.leaseTasks("w", T0))).toEqual(["a-u0", "a-u3"]);
  });

  it("fails the job when one unit reaches maxErrors, dropping the other leases", () => {
    const s = withVolunteers(["v", "w"], 2);
    s.addJob(job("a", 6, { maxErrors: 2 }), T0);
    s.addJob(job("b", 6), T0);
    const [first] = s.leaseTasks("v", T0, 1);
    expect(first!.unitId).toBe("a-u0");
    s.failTask("v", first!.taskId, "first", T0);
    const wTasks = s.leaseTasks("w", T0); // b, a-u0 (front)
    const bad = wTasks.find((t) => t.unitId === "a-u0");
    expect(bad).toBeDefined();
    const vTasks = s.leaseTasks("v", T0); // b, a-u1
    const other = vTasks.find((t) => t.jobId === "a")!;
    const outcome = s.failTask("w", bad!.taskId, "second", T0);
    expect(outcome).toEqual({
      kind: "error-recorded",
      jobId: "a",
      unitId: "a-u0",
      taskId: bad!.taskId,
      host: "host-w",
      account: "anon:w",
      requeued: false,
      jobFailed: true,
      dropped: [{ taskId: other.taskId, volunteerId: "v", jobId: "a", unitId: other.unitId }],
    });
    expect(s.jobState("a")).toBe("failed");
    expect(s.jobError("a")).toBe("second (unit 0 failed on 2 hosts)");
    expect(s.progress("a")).toMatchObject({ queued: 0, running: 0 });
    expect(s.stats().runningJobs).toBe(1);
    expect(s.completeTask("v", other.taskId, 0, "d", T0)).toEqual({ kind: "stale", reason: "unknown-task" });
    // v got its a-lease taken away, so it has one free slot, and only b can fill it.
    expect(jobsOf(s.leaseTasks("v", T0))).toEqual(["b"]);
    expect(s.progress("b")).toMatchObject({ queued: 3, running: 3 });
  });

  it("counts errors per unit, not per job", () => {
    const s = withVolunteers(["v"], 3);
    s.addJob(job("a", 3, { maxErrors: 2 }), T0);
    for (const t of s.leaseTasks("v", T0)) {
      expect(s.failTask("v", t.taskId, `err ${t.unitId}`, T0)).toMatchObject({ requeued: true, jobFailed: false });
    }
    expect(s.jobState("a")).toBe("running");
    expect(s.jobError("a")).toBe("err a-u2 (unit 2 failed on 1 host)");
  });

  it("fails at the first error when maxErrors is 1", () => {
    const s = withVolunteers(["v"], 1);
    s.addJob(job("a", 2, { maxErrors: 1 }), T0);
    const [t] = s.leaseTasks("v", T0);
    expect(s.failTask("v", t!.taskId, "nope", T0)).toMatchObject({ jobFailed: true, requeued: false });
    expect(s.stats()).toEqual({ volunteers: 1, queued: 0, leased: 0, runningJobs: 0, pendingResults: 0, barredJobs: 0 });
  });
});

describe("removeJob", () => {
  it("forgets ended jobs only, and a re-added job never accepts the old job's task ids", () => {
    const s = withVolunteers(["v"], 1);
    s.addJob(job("a", 2), T0);
    expect(() => s.removeJob("a")).toThrow(/still running/);
    const [old] = s.leaseTasks("v", T0);
    s.cancelJob("a");
    expect(s.removeJob("a")).toBe(true);
    expect(s.removeJob("a")).toBe(false);
    expect(s.progress("a")).toBeUndefined();
    expect(s.jobState("a")).toBeUndefined();
    s.addJob(job("a", 2), T0);
    const [fresh] = s.leaseTasks("v", T0);
    expect(fresh!.unitId).toBe(old!.unitId);
    expect(fresh!.taskId).not.toBe(old!.taskId);
    expect(s.completeTask("v", old!.taskId, 0, "d", T0).kind).toBe("stale");
    expect(s.progress("a")!.done).toBe(0);
  });
});

describe("internals", () => {
  it("Deque keeps order through wrap-around and growth", () => {
    const d = new Deque<number>(2);
    const model: number[] = [];
    const rand = mulberry32(7);
    for (let i = 0; i < 5000; i++) {
      const r = rand();
      if (r < 0.4) {
        d.pushBack(i);
        model.push(i);
      } else if (r < 0.7) {
        d.pushFront(i);
        model.unshift(i);
      } else {
        expect(d.popFront()).toBe(model.shift());
      }
      expect(d.size).toBe(model.length);
    }
    expect([...d]).toEqual(model);
    d.clear();
    expect(d.popFront()).toBeUndefined();
  });

  it("lets done units go while the job runs, and a restart holds none of those done before it", () => {
    const s = withVolunteers(["v"], 4);
    s.addJob(job("a", 200), T0);
    const held = () => (s as unknown as { jobs: Map<string, { units: unknown[] }> }).jobs.get("a")!.units.length;
    let now = T0;
    const run = (until: number) => {
      const order: number[] = [];
      while (s.progress("a")!.done < until) {
        const tasks = s.leaseTasks("v", now);
        if (tasks.length === 0) throw new Error("nothing to lease");
        for (const t of tasks) {
          order.push(t.index);
          s.completeTask("v", t.taskId, { n: t.index }, `d${t.index}`, ++now);
        }
        s.audit();
      }
      return order;
    };
    run(150);
    expect(s.progress("a")).toMatchObject({ total: 200, done: 152 });
    expect(held()).toBeLessThan(200 - 152 + 152 / 2);
    // The rest still runs to the end, in order.
    expect(run(200)).toEqual(Array.from({ length: 48 }, (_, i) => 152 + i));
    expect(s.progress("a")!.state).toBe("completed");

    const r = withVolunteers(["v"], 4);
    r.addJob(job("b", 100), T0, Array.from({ length: 60 }, (_, i) => `b-u${i}`));
    expect(r.progress("b")).toMatchObject({ total: 100, done: 60, queued: 40 });
    expect((r as unknown as { jobs: Map<string, { units: unknown[] }> }).jobs.get("b")!.units.length).toBe(40);
    r.audit();
  });

  it("LeaseHeap pops in key order, skips dead entries and compacts", () => {
    const dead = new Set<number>();
    const heap = new LeaseHeap<number>((item) => !dead.has(item), 8);
    const rand = mulberry32(11);
    const keys = new Map<number, number>();
    for (let i = 0; i < 1000; i++) {
      const k = Math.floor(rand() * 10_000);
      keys.set(i, k);
      heap.push(k, i);
    }
    for (let i = 0; i < 1000; i++) {
      if (i % 3 === 0) continue;
      dead.add(i);
      heap.discard();
    }
    expect(heap.liveSize).toBe(334);
    expect(heap.size).toBeLessThan(1000); // compaction ran
    const live = [...keys].filter(([i]) => !dead.has(i)).map(([, k]) => k).sort((a, b) => a - b);
    expect(heap.peekKey()).toBe(live[0]);
    const popped = heap.popDue(5000).map((i) => keys.get(i)!);
    expect(popped).toEqual(live.filter((k) => k <= 5000));
    expect(heap.popDue(Infinity).map((i) => keys.get(i)!)).toEqual(live.filter((k) => k > 5000));
    expect(heap.peekKey()).toBeUndefined();
  });
});

describe("randomized operations keep the counters true", () => {
  for (const seed of [1, 2, 3, 42, 2024]) {
    it(`seed ${seed}`, () => {
      const rand = mulberry32(seed);
      const pick = <T>(xs: readonly T[]): T | undefined => (xs.length ? xs[Math.floor(rand() * xs.length)] : undefined);
      const s = new Scheduler();
      let now = T0;
      const jobIds: string[] = [];
      const volunteers = new Map<VolunteerId, number>(); // id → window
      let nextJob = 0;
      let nextVol = 0;
      const accepted = new Set<string>(); // unit ids, to prove exactly-once acceptance
      const completions = new Map<string, number>(); // job id → jobDone count
      const totals = new Map<string, number>();
      let everAccepted = 0;
      let everExpired = 0;

      for (let step = 0; step < 3000; step++) {
        const r = rand();
        const vol = pick([...volunteers.keys()]);
        if (r < 0.06 || jobIds.length === 0) {
          const id = `j${nextJob++}`;
          const n = Math.floor(rand() * 12);
          const spec = job(id, n, { leaseMs: 50 + Math.floor(rand() * 400), maxErrors: 1 + Math.floor(rand() * 3) });
          const done = spec.units.filter(() => rand() < 0.15).map((u) => u.id);
          for (const u of done) accepted.add(u);
          const { progress: p } = s.addJob(spec, now, { done });
          if (p.state === "completed") completions.set(id, 1);
          jobIds.push(id);
          totals.set(id, n);
        } else if (r < 0.12 || volunteers.size === 0) {
          const id = `v${nextVol++}`;
          const w = Math.floor(rand() * 5);
          s.addVolunteer(id, conn(id, w));
          volunteers.set(id, w);
        } else if (r < 0.15) {
          const held = s.heldBy(vol!);
          expect(s.removeVolunteer(vol!, now).sort()).toEqual(held.sort());
          volunteers.delete(vol!);
        } else if (r < 0.18) {
          const w = Math.floor(rand() * 6);
          s.setWindow(vol!, w);
          volunteers.set(vol!, w);
        } else if (r < 0.45) {
          const before = s.heldBy(vol!).length;
          const max = rand() < 0.3 ? Math.floor(rand() * 3) : undefined;
          const queuedBefore = s.stats().queued;
          const got = s.leaseTasks(vol!, now, max);
          const room = Math.max(0, volunteers.get(vol!)! - before);
          expect(got.length).toBe(Math.min(room, max ?? Infinity, queuedBefore));
          for (const t of got) expect(t.deadline).toBeGreaterThan(now);
        } else if (r < 0.75) {
          const taskId = pick(s.heldBy(vol!));
          if (taskId !== undefined) {
            const wrong = rand() < 0.1 ? pick([...volunteers.keys()].filter((v) => v !== vol)) : undefined;
            const o = s.completeTask(wrong ?? vol!, taskId, 0, "d", now);
            if (wrong) expect(o).toEqual({ kind: "stale", reason: "not-holder" });
            else {
              expect(o.kind).toBe("validated");
              if (o.kind === "validated") {
                expect(accepted.has(o.unitId)).toBe(false);
                accepted.add(o.unitId);
                everAccepted++;
                if (o.jobDone) completions.set(o.jobId, (completions.get(o.jobId) ?? 0) + 1);
              }
              expect(s.completeTask(vol!, taskId, 0, "d", now).kind).toBe("stale");
            }
          }
        } else if (r < 0.8) {
          const taskId = pick(s.heldBy(vol!));
          if (taskId !== undefined) expect(s.failTask(vol!, taskId, "boom", now).kind).toBe("error-recorded");
        } else if (r < 0.93) {
          now += Math.floor(rand() * 100);
          const due = s.nextDeadline();
          const expired = s.expireLeases(now);
          if (due === undefined || due > now) expect(expired).toEqual([]);
          else expect(expired.length).toBeGreaterThan(0);
          for (const e of expired) expect(s.task(e.taskId)).toBeUndefined();
          everExpired += expired.length;
        } else if (r < 0.97) {
          const id = pick(jobIds)!;
          if (s.jobState(id) === "running") {
            const leased = s.progress(id)!.running;
            expect(s.cancelJob(id)).toHaveLength(leased);
          } else expect(s.cancelJob(id)).toEqual([]);
        } else {
          const id = pick(jobIds)!;
          if (s.jobState(id) !== "running") {
            expect(s.removeJob(id)).toBe(true);
            jobIds.splice(jobIds.indexOf(id), 1);
          }
        }

        // Recount from the public view and compare with the O(1) counters. Problems are
        // collected and asserted once per step: thousands of expect() calls are slow.
        const problems: string[] = [];
        const check = (ok: boolean, what: string) => {
          if (!ok) problems.push(`step ${step}: ${what}`);
        };
        const progress = jobIds.map((j) => s.progress(j)!);
        const heldIds = [...volunteers.keys()].flatMap((v) => s.heldBy(v));
        const stats = s.stats();
        let running = 0;
        let queued = 0;
        let leased = 0;
        for (const p of progress) {
          leased += p.running;
          if (p.state === "running") {
            running++;
            queued += p.queued;
            check(p.queued + p.running + p.done === p.total, `${p.jobId} loses units`);
          }
          if (p.state === "completed") check(p.done === p.total, `${p.jobId} completed early`);
          check((completions.get(p.jobId) ?? 0) === (p.state === "completed" ? 1 : 0), `${p.jobId} completions`);
        }
        check(stats.volunteers === volunteers.size, "volunteers");
        check(stats.runningJobs === running, `runningJobs ${stats.runningJobs} vs ${running}`);
        check(stats.queued === queued, `queued ${stats.queued} vs ${queued}`);
        check(stats.leased === heldIds.length, `leased ${stats.leased} vs held ${heldIds.length}`);
        check(stats.leased === leased, `leased ${stats.leased} vs jobs' running ${leased}`);
        let earliest: number | undefined;
        for (const id of heldIds) {
          const d = s.task(id)!.deadline;
          if (earliest === undefined || d < earliest) earliest = d;
        }
        check(s.nextDeadline() === earliest, `nextDeadline ${s.nextDeadline()} vs ${earliest}`);
        expect(problems).toEqual([]);
        s.audit();
      }
      // The run must have exercised the interesting paths, or it proves little.
      const states = jobIds.map((j) => s.jobState(j));
      expect(totals.size).toBeGreaterThan(50);
      expect(everAccepted).toBeGreaterThan(100);
      expect(everExpired).toBeGreaterThan(100);
      expect(completions.size).toBeGreaterThan(10);
      expect(states).toContain("failed");
      expect(states).toContain("cancelled");
    });
  }
});
