import { describe, expect, it } from "vitest";
import { Scheduler } from "../../server/scheduler/index.js";
import { DEFAULT_TRUST } from "../../server/scheduler/credibility.js";
import type { JobSpec } from "../../server/scheduler/index.js";
import { errorVoice } from "../../server/coordinator/network.js";

// Three free anonymous ids answering every task with an error failed anyone's job in 0.3 s:
// errors counted per host, and a host is a free id. On a kernel the server runs itself, a unit
// whose errors reach the limit is computed by the server instead, and its answer decides it.
const T0 = 1_700_000_000_000;

function job(id: string, o: { verifiable: boolean }): JobSpec {
  return {
    id, kernel: "pi", params: {}, leaseMs: 60_000, maxErrors: 3, verifiable: o.verifiable,
    units: [{ id: `${id}.0`, index: 0, input: {}, work: 1 }, { id: `${id}.1`, index: 1, input: {}, work: 1 }],
    replication: { target: 1, quorum: 1, maxInstances: 4 }, adaptive: false,
  };
}

function erroredThrice(verifiable: boolean) {
  const s = new Scheduler({ trust: DEFAULT_TRUST, random: () => 0.99 });
  s.addJob(job("j", { verifiable }), T0);
  const outcomes = [];
  for (const k of ["a", "b", "c"]) {
    s.addVolunteer(k, { window: 1, host: `h-${k}`, account: `anon:${k}` });
    const [t] = s.leaseTasks(k, T0);
    expect(t!.unitId).toBe("j.0");
    outcomes.push(s.failTask(k, t!.taskId, "nope", T0));
  }
  return { s, last: outcomes.at(-1)! };
}

describe("errors past the limit on a kernel the server runs", () => {
  it("hold the unit for the server's computation instead of failing the job, and its answer decides the unit", () => {
    const { s, last } = erroredThrice(true);
    expect(last).toMatchObject({ kind: "error-recorded", jobFailed: false, verify: { kind: "verify", unitId: "j.0" } });
    expect(s.jobState("j")).toBe("running");
    s.audit();
    const decided = s.checked("j", "j.0", 3.14, "d");
    expect(decided).toMatchObject({ kind: "validated", unitId: "j.0", valid: [], invalid: [], checked: true, jobDone: false });
    expect(s.jobState("j")).toBe("running");
    s.audit();
  });

  it("fail the job with the volunteers' error when the server cannot compute the unit either", () => {
    const { s } = erroredThrice(true);
    const out = s.uncheckable("j", "j.0");
    expect(out).toMatchObject({ kind: "unit-failed", reason: "nope (unit 0 failed on 3 hosts)" });
    expect(s.jobState("j")).toBe("failed");
  });

  it("still fail a job the server cannot run (a program's) once its errors reach the limit", () => {
    const { s, last } = erroredThrice(false);
    expect(last).toMatchObject({ kind: "error-recorded", jobFailed: true });
    expect(s.jobState("j")).toBe("failed");
  });
});

describe("errors on a job the server cannot run, by voice", () => {
  /** A host that errors on the unit it is leased; its errors speak for `voice` (the edge's errorVoice). */
  function errorFrom(s: Scheduler, k: string, voice: string | undefined, valid = 0) {
    const hostRecord = { consecutiveValid: valid, valid, invalid: 0, errors: 0, turnaroundMsTotal: 0, turnaroundCount: 0 };
    s.addVolunteer(k, { window: 1, host: `h-${k}`, account: `anon:${k}`, hostRecord, ...(voice ? { voice } : {}) });
    const [t] = s.leaseTasks(k, T0);
    expect(t!.unitId).toBe("j.0");
    return s.failTask(k, t!.taskId, "nope", T0);
  }

  it("count once per voice: made-up ids of one network cannot fail it, whatever their record", () => {
    const s = new Scheduler({ trust: DEFAULT_TRUST, random: () => 0.99 });
    s.addJob(job("j", { verifiable: false }), T0);
    // Five ids of one /24, more than maxErrors (3) and maxInstances (4), some with valid results: one voice.
    for (const [k, valid] of [["a", 0], ["b", 1], ["c", 5], ["d", 0], ["e", 9]] as const) {
      expect(errorFrom(s, k, "net:10.0.0.0/24", valid)).toMatchObject({ kind: "error-recorded", jobFailed: false, requeued: true });
    }
    expect(s.jobState("j")).toBe("running");
    s.audit();
    // Another network, then a signed-in account: three voices.
    expect(errorFrom(s, "f", "net:10.0.1.0/24")).toMatchObject({ jobFailed: false });
    expect(errorFrom(s, "g", "account:user:u1")).toMatchObject({ jobFailed: true });
    expect(s.jobState("j")).toBe("failed");
  });

  it("fail it on three hosts of no known voice, as before", () => {
    const s = new Scheduler({ trust: DEFAULT_TRUST, random: () => 0.99 });
    s.addJob(job("j", { verifiable: false }), T0);
    expect(errorFrom(s, "a", undefined)).toMatchObject({ jobFailed: false });
    expect(errorFrom(s, "b", undefined)).toMatchObject({ jobFailed: false });
    expect(errorFrom(s, "c", undefined)).toMatchObject({ jobFailed: true });
  });
});

describe("a volunteer's voice", () => {
  it("is its account when signed in, its network when anonymous, itself when the network is unknown", () => {
    expect(errorVoice("user:u1", "u1", "10.0.0.0/24")).toBe("account:user:u1");
    expect(errorVoice("anon:v1", null, "10.0.0.0/24")).toBe("net:10.0.0.0/24");
    expect(errorVoice("anon:v1", null, undefined)).toBeUndefined();
  });
});
