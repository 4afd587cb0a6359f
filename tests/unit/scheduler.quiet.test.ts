import { describe, expect, it } from "vitest";
import { Scheduler } from "../../server/scheduler/index.js";
import type { JobSpec, ResultOutcome, TaskAssignment } from "../../server/scheduler/index.js";
import { QUIET_AGE_FACTOR, QUIET_FACTOR, QUIET_MIN_MS } from "../../server/scheduler/quiet.js";

// A socket that takes units and says nothing holds them until their leases lapse; once nothing
// of the job is queued, a volunteer that answers may take a copy of them (quiet.ts).
const T0 = 1_700_000_000_000;
const LEASE = 60_000;

function job(id: string, units: number, o: { r?: number; work?: number } = {}): JobSpec {
  const r = o.r ?? 1;
  return {
    id, kernel: "pi", params: {},
    units: Array.from({ length: units }, (_, i) => ({ id: `${id}-u${i}`, index: i, input: { i }, work: o.work ?? 1 })),
    leaseMs: LEASE, maxErrors: 3, replication: { target: r, quorum: r, maxInstances: r + 3 }, adaptive: false, comparator: { kind: "exact" },
  };
}

function setup() {
  const s = new Scheduler({});
  let now = T0;
  const join = (key: string, window = 4) => s.addVolunteer(key, { window, host: `h-${key}`, account: `acct-${key}` });
  const lease = (key: string, max?: number) => s.leaseTasks(key, now, max);
  const done = (key: string, t: TaskAssignment, output: unknown = 1): ResultOutcome => s.completeTask(key, t.taskId, output, JSON.stringify(output), now);
  let warm = 0;
  /** A socket that has answered once (a unit of a job of its own), as copies ask of their takers. */
  const answering = (key: string, window: number) => {
    join(key, window);
    s.addJob(job(`warm${++warm}`, 1), now);
    done(key, lease(key)[0]!);
  };
  return { s, join, answering, lease, done, at: (t: number) => (now = t), add: (spec: JobSpec) => s.addJob(spec, now), sweep: () => s.sweep(now, 60_000) };
}

describe("copies of units held by quiet sockets", () => {
  it("offers them, once the holder was quiet long enough, to a volunteer that answered", () => {
    const c = setup();
    c.answering("worker", 4);
    c.join("hoarder", 2);
    c.join("fresh", 4);
    c.add(job("j", 2));
    const held = c.lease("hoarder");
    expect(held).toHaveLength(2);
    expect(c.lease("worker")).toHaveLength(0);

    c.at(T0 + QUIET_MIN_MS - 1);
    expect(c.sweep()).toMatchObject({ copies: 0, quiet: [] });
    expect(c.lease("worker")).toHaveLength(0);

    c.at(T0 + QUIET_MIN_MS);
    expect(c.sweep()).toMatchObject({ copies: 2, quiet: ["hoarder"] });
    // A socket that never answered is not handed its peers' units.
    expect(c.lease("fresh")).toHaveLength(0);
    const copies = c.lease("worker");
    expect(copies.map((t) => t.unitId).sort()).toEqual(held.map((t) => t.unitId).sort());
    c.s.audit();
    // Told once per silence.
    expect(c.sweep()).toMatchObject({ copies: 0, quiet: [] });

    // The first result wins; the quiet copy is revoked, and its late answer is stale.
    const first = c.done("worker", copies[0]!);
    expect(first.kind).toBe("validated");
    const quietOne = held.find((t) => t.unitId === copies[0]!.unitId)!;
    expect(first.kind === "validated" && first.revoked.map((r) => r.taskId)).toEqual([quietOne.taskId]);
    expect(c.done("hoarder", quietOne).kind).toBe("stale");
    expect(c.done("worker", copies[1]!).kind).toBe("validated");
    c.s.audit();
    expect(c.s.stats().queued).toBe(0);
  });

  it("gives a volunteer the job's queued units before copies, and no copy while one holder of the unit answers", () => {
    const c = setup();
    c.answering("worker", 1);
    c.join("hoarder", 2);
    c.add(job("j", 3));
    const held = c.lease("hoarder");
    expect(held).toHaveLength(2);
    c.at(T0 + QUIET_MIN_MS * 1.5);
    expect(c.sweep().copies).toBe(2);
    // The third unit is queued: the worker's one place goes to it, not to a copy.
    const [third] = c.lease("worker");
    expect(third!.unitId).toBe("j-u2");
    c.done("worker", third!);
    // The hoarder answers one of its units now: its other one is not quiet any more.
    c.done("hoarder", held[0]!);
    expect(c.lease("worker")).toHaveLength(0);
    expect(c.sweep().copies).toBe(0);
    c.s.audit();
  });

  it("counts quiet from the holder's last answer, and scales with the unit's expected time on its host", () => {
    const c = setup();
    c.answering("worker", 2);
    c.join("slow", 3);
    const work = 10_000;
    c.add(job("j", 2, { work }));
    const [a, b] = c.lease("slow");
    // It answers one unit half way: the other is quiet from then.
    c.at(T0 + (QUIET_FACTOR * work) / 2);
    c.done("slow", a!);
    c.at(T0 + QUIET_FACTOR * work + 1);
    expect(c.sweep().copies).toBe(0);
    c.at(T0 + (QUIET_FACTOR * work * 3) / 2);
    expect(c.sweep().copies).toBe(1);
    expect(c.lease("worker").map((t) => t.unitId)).toEqual([b!.unitId]);
    c.s.audit();
  });

  it("copies the units a socket holds far too long, however often it answers one of them", () => {
    const c = setup();
    c.answering("worker", 8);
    c.join("dripper", 8);
    c.add(job("j", 8));
    const held = c.lease("dripper");
    expect(held).toHaveLength(8);
    // One answer every half quiet time: never silent for long.
    let t = T0;
    for (let i = 0; t + QUIET_MIN_MS / 2 < T0 + QUIET_AGE_FACTOR * QUIET_MIN_MS; i++) {
      t += QUIET_MIN_MS / 2;
      c.at(t);
      c.done("dripper", held[i]!);
      expect(c.sweep().copies).toBe(0);
    }
    c.at(T0 + QUIET_AGE_FACTOR * QUIET_MIN_MS);
    const report = c.sweep();
    expect(report.quiet).toEqual(["dripper"]);
    expect(report.copies).toBe(8 - 3);
    expect(c.lease("worker")).toHaveLength(5);
    c.s.audit();
  });

  it("copies a unit of a replicated job to another host than its results' and instances'", () => {
    const c = setup();
    c.answering("w1", 2);
    c.answering("w2", 2);
    c.join("hoarder", 1);
    c.add(job("j", 1, { r: 2 }));
    const [h] = c.lease("hoarder");
    const [w] = c.lease("w1");
    expect(h!.unitId).toBe(w!.unitId);
    expect(c.done("w1", w!).kind).toBe("pending");
    c.at(T0 + QUIET_MIN_MS);
    expect(c.sweep().copies).toBe(1);
    // w1 holds a result of the unit already: w2 takes the copy, and the quorum is met.
    expect(c.lease("w1")).toHaveLength(0);
    const [copy] = c.lease("w2");
    expect(copy!.unitId).toBe(h!.unitId);
    const out = c.done("w2", copy!);
    expect(out.kind === "validated" && out.revoked.map((r) => r.taskId)).toEqual([h!.taskId]);
    c.s.audit();
  });
});
