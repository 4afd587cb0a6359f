import { describe, expect, it } from "vitest";
import { Scheduler } from "../../server/scheduler/index.js";
import type { JobSpec, ReplicationSpec, TaskAssignment } from "../../server/scheduler/index.js";

// Locality scheduling: a round's unit goes back to the volunteer that computed the same shard
// last round (it has the shard cached), for a while, before anyone else may take it.

const T0 = 1_700_000_000_000;
const ONE: ReplicationSpec = { target: 1, quorum: 1, maxInstances: 10 };

/** One round of a job over `shards` shards: unit i reads shard-i. */
function round(id: string, shards: number, replication = ONE): JobSpec {
  return {
    id, kernel: "program", params: {}, leaseMs: 60_000, maxErrors: 3, replication,
    units: Array.from({ length: shards }, (_, i) => ({ id: `${id}-u${i}`, index: i, input: { blob: `shard-${i}` }, work: 1, locality: `shard-${i}` })),
  };
}

function fleet(ids: string[], window: number, opts: ConstructorParameters<typeof Scheduler>[0] = {}): Scheduler {
  const s = new Scheduler(opts);
  for (const id of ids) s.addVolunteer(id, { window, host: `host-${id}`, account: `anon:${id}` });
  return s;
}

const shardsOf = (tasks: TaskAssignment[]) => tasks.map((t) => (t.input as { blob: string }).blob).sort();

/** Completes every task (one result accepts a unit here). */
function complete(s: Scheduler, volunteer: string, tasks: TaskAssignment[], now: number) {
  for (const t of tasks) expect(s.completeTask(volunteer, t.taskId, 1, "d", now).kind).toBe("validated");
}

/**
 * a computed every shard of round 1 alone; b (window 2, as a's now) joins, and round 2 starts:
 * a takes two of its units, and b, asking while a's other four wait, is handed three of them
 * (6 against 0, then 5 against 1, 4 against 2) but takes none: a has them cached.
 */
function joinedInRound2(localityWaitMs: number) {
  const s = fleet(["a"], 6, { localityWaitMs });
  s.addJob(round("r1", 6), T0);
  complete(s, "a", s.leaseTasks("a", T0), T0 + 1);
  s.setWindow("a", 2);
  s.addVolunteer("b", { window: 2, host: "host-b", account: "anon:b" });
  s.addJob(round("r2", 6), T0 + 10);
  const a2 = s.leaseTasks("a", T0 + 10);
  expect(s.leaseTasks("b", T0 + 10)).toEqual([]);
  return { s, a2 };
}

describe("locality scheduling", () => {
  it("gives each shard of the next round to the volunteer that computed it, whatever order they ask in", () => {
    const s = fleet(["a", "b"], 2);
    s.addJob(round("r1", 4), T0);
    const a1 = s.leaseTasks("a", T0);
    const b1 = s.leaseTasks("b", T0);
    expect(shardsOf(a1)).toEqual(["shard-0", "shard-1"]);
    expect(shardsOf(b1)).toEqual(["shard-2", "shard-3"]);
    complete(s, "a", a1, T0 + 5);
    complete(s, "b", b1, T0 + 5);

    // Round 2: b asks first, and gets its own shards, not the head of the queue.
    s.addJob(round("r2", 4), T0 + 10);
    expect(shardsOf(s.leaseTasks("b", T0 + 10))).toEqual(["shard-2", "shard-3"]);
    expect(shardsOf(s.leaseTasks("a", T0 + 10))).toEqual(["shard-0", "shard-1"]);
  });

  it("holds a shard for its busy holder until the wait ends, then gives it to anyone, who holds it from then on", () => {
    const s = fleet(["a"], 3, { localityWaitMs: 100 });
    s.addJob(round("r1", 3), T0);
    complete(s, "a", s.leaseTasks("a", T0), T0 + 1);
    s.setWindow("a", 2);
    // b works on two shards of other data: a holds only one more piece of data than b.
    s.addVolunteer("b", { window: 2, host: "host-b", account: "anon:b" });
    s.addJob({ ...round("other", 2), units: round("other", 2).units.map((u) => ({ ...u, locality: `other-${u.index}` })) }, T0 + 2);
    complete(s, "b", s.leaseTasks("b", T0 + 2), T0 + 3);

    // a holds shards 0, 1 and 2 but has room for two: b passes the third over while it waits.
    s.addJob(round("r2", 3), T0 + 10);
    const a2 = s.leaseTasks("a", T0 + 10);
    expect(a2).toHaveLength(2);
    expect(s.leaseTasks("b", T0 + 20)).toEqual([]);
    // The dispatcher is told when to come back for it.
    expect(s.localityDeadline()).toBe(T0 + 110);
    expect(s.localityDeadline()).toBeUndefined();
    const late = s.leaseTasks("b", T0 + 110);
    expect(late).toHaveLength(1);
    complete(s, "a", a2, T0 + 111);
    complete(s, "b", late, T0 + 111);

    // The shard b took is b's now.
    const moved = (late[0]!.input as { blob: string }).blob;
    s.addJob(round("r3", 3), T0 + 200);
    expect(shardsOf(s.leaseTasks("a", T0 + 200))).not.toContain(moved);
    expect(shardsOf(s.leaseTasks("b", T0 + 200))).toEqual([moved]);
  });

  it("evens out the first round's race once its last unit is handed out: the volunteer with fewest fetches one ahead, and computes it from the next round", () => {
    const s = fleet(["a", "b"], 4);
    s.addJob(round("r1", 6), T0);
    const a1 = s.leaseTasks("a", T0);
    expect(shardsOf(a1)).toEqual(["shard-0", "shard-1", "shard-2", "shard-3"]);
    expect(s.takePrefetches()).toEqual(new Map());
    // The last two go to b: a holds 4, b 2, so a's last (which a computes now) becomes b's.
    const b1 = s.leaseTasks("b", T0);
    expect(shardsOf(b1)).toEqual(["shard-4", "shard-5"]);
    expect(s.takePrefetches()).toEqual(new Map([["b", ["shard-3"]]]));
    expect(s.takePrefetches()).toEqual(new Map());
    complete(s, "a", a1, T0 + 5);
    complete(s, "b", b1, T0 + 5);

    s.setWindow("a", 3);
    s.setWindow("b", 3);
    s.addJob(round("r2", 6), T0 + 10);
    expect(shardsOf(s.leaseTasks("a", T0 + 10))).toEqual(["shard-0", "shard-1", "shard-2"]);
    expect(shardsOf(s.leaseTasks("b", T0 + 10))).toEqual(["shard-3", "shard-4", "shard-5"]);
    expect(s.takePrefetches()).toEqual(new Map());
  });

  it("hands shards to a volunteer that joins: it fetches them ahead while their holder computes the round, and computes them from the next", () => {
    const { s, a2 } = joinedInRound2(10_000);
    expect(shardsOf(a2)).toEqual(["shard-0", "shard-1"]);
    expect(s.takePrefetches()).toEqual(new Map([["b", ["shard-2", "shard-3", "shard-4"]]]));
    complete(s, "a", a2, T0 + 12);
    const a3 = s.leaseTasks("a", T0 + 12);
    expect(shardsOf(a3)).toEqual(["shard-2", "shard-3"]);
    complete(s, "a", a3, T0 + 14);
    const a4 = s.leaseTasks("a", T0 + 14);
    expect(shardsOf(a4)).toEqual(["shard-4", "shard-5"]);
    complete(s, "a", a4, T0 + 16);
    expect(s.takePrefetches()).toEqual(new Map());

    // Round 3: three each.
    s.setWindow("a", 3);
    s.setWindow("b", 3);
    s.addJob(round("r3", 6), T0 + 20);
    expect(shardsOf(s.leaseTasks("b", T0 + 20))).toEqual(["shard-2", "shard-3", "shard-4"]);
    expect(shardsOf(s.leaseTasks("a", T0 + 20))).toEqual(["shard-0", "shard-1", "shard-5"]);
  });

  it("gives a handed-over shard's unit to its new holder once the wait for the previous one ends", () => {
    const { s, a2 } = joinedInRound2(100);
    expect([...s.takePrefetches().values()]).toEqual([["shard-2", "shard-3", "shard-4"]]);
    // a is still busy when the wait ends: b, which holds them now, takes two.
    expect(shardsOf(s.leaseTasks("b", T0 + 110))).toEqual(["shard-2", "shard-3"]);
    complete(s, "a", a2, T0 + 111);
  });

  it("does not wait for a holder that left, is paused, or may not take the unit", () => {
    const s = fleet(["a", "b", "c"], 1);
    s.addJob(round("r1", 1), T0);
    const a1 = s.leaseTasks("a", T0);
    complete(s, "a", a1, T0 + 1);

    // Paused (window 0): its shard goes to whoever asks.
    s.setWindow("a", 0);
    s.addJob(round("r2", 1), T0 + 10);
    const b2 = s.leaseTasks("b", T0 + 10);
    expect(shardsOf(b2)).toEqual(["shard-0"]);
    complete(s, "b", b2, T0 + 11);

    // Left: the same.
    s.removeVolunteer("b", T0 + 12);
    s.addJob(round("r3", 1), T0 + 20);
    expect(shardsOf(s.leaseTasks("c", T0 + 20))).toEqual(["shard-0"]);

    // Replicated: the holder already has a copy of the unit, so its second copy goes elsewhere at once.
    const r = fleet(["a", "b"], 1);
    r.addJob(round("q1", 1), T0);
    complete(r, "a", r.leaseTasks("a", T0), T0 + 1);
    r.addJob(round("q2", 1, { target: 2, quorum: 2, maxInstances: 4 }), T0 + 10);
    expect(r.leaseTasks("a", T0 + 10)).toHaveLength(1);
    expect(r.leaseTasks("b", T0 + 10)).toHaveLength(1);
    expect(r.localityDeadline()).toBeUndefined();
  });

  it("does not hold a shard for a holder whose host has its share of the round (maxUnitsPerHost)", () => {
    const capped = (id: string, shards: number) => ({ ...round(id, shards), maxUnitsPerHost: 2 });
    const s = fleet(["a", "b"], 3);
    // Round 1 on two hosts: a takes its share of two, b two and, as nobody has less, a third; then a its third.
    s.addJob(capped("r1", 6), T0);
    const r1 = ["a", "b", "a"].map((v) => [v, s.leaseTasks(v, T0)] as const);
    expect(r1.map(([, t]) => t.length)).toEqual([2, 3, 1]);
    for (const [v, t] of r1) complete(s, v, t, T0 + 5);

    // A newcomer: a and b take their share of their own shards, and are refused the third
    // while c has less. c takes those two at once instead of waiting for holders that may not.
    s.addVolunteer("c", { window: 3, host: "host-c", account: "anon:c" });
    s.addJob(capped("r2", 6), T0 + 10);
    expect(s.leaseTasks("a", T0 + 10)).toHaveLength(2);
    expect(s.leaseTasks("b", T0 + 10)).toHaveLength(2);
    expect(s.leaseTasks("c", T0 + 11)).toHaveLength(2);
    expect(s.localityDeadline()).toBeUndefined();
  });

  it("leaves units without locality where they were", () => {
    const s = fleet(["a", "b"], 1);
    const plain = round("p", 2);
    plain.units = plain.units.map(({ locality: _, ...u }) => u);
    s.addJob(plain, T0);
    expect(s.leaseTasks("b", T0)).toHaveLength(1);
    expect(s.leaseTasks("a", T0)).toHaveLength(1);
    expect(s.localityDeadline()).toBeUndefined();
  });
});
