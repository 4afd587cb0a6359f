import { describe, expect, it } from "vitest";
import { costBreakdown, proposedCpuSeconds, replicationText, seconds } from "../../app/(portal)/jobs/estimateText";

// The jobs page's estimate: its words about replication must match the replication chosen,
// and its breakdown must multiply by the number of results actually paid (the quorum).
describe("the estimate's words", () => {
  it("says one volunteer and one paid result for a single replica, whatever the adaptive flag", () => {
    for (const adaptive of [true, false]) {
      const text = replicationText({ replicas: 1, quorum: 1, adaptive });
      expect(text).toBe("Each unit is computed by one volunteer and accepted when its result comes back; you pay for that one result.");
      expect(text).not.toMatch(/twice|both|different volunteers|agree|alone/);
    }
  });

  it("names the replicas and the quorum that were chosen", () => {
    expect(replicationText({ replicas: 2, quorum: 2, adaptive: false })).toBe(
      "Each unit is computed by 2 different volunteers and accepted when both agree; you pay for the 2 agreeing results of each unit.",
    );
    expect(replicationText({ replicas: 3, quorum: 3, adaptive: false })).toContain("3 different volunteers and accepted when all 3 agree; you pay for the 3 agreeing");
    expect(replicationText({ replicas: 5, quorum: 3, adaptive: false })).toContain("5 different volunteers and accepted when 3 of them agree; you pay for the 3 agreeing");
    expect(replicationText({ replicas: 2, quorum: 1, adaptive: false })).toBe(
      "Each unit is computed by 2 different volunteers and accepted as soon as one result comes back; you pay for one result per unit.",
    );
    expect(replicationText({ replicas: 3, quorum: 2, adaptive: true })).toMatch(/when 2 of them agree.*may compute a unit alone.*paid once\.$/);
    expect(replicationText({ replicas: 3, quorum: 2, adaptive: false })).not.toContain("alone");
  });

  it("breaks the cost down into units × paid results × work per unit × price", () => {
    const base = { estimate: 0, cpuSeconds: 0.6, chunks: 3, price: 1000, replicas: 3, quorum: 2, adaptive: true };
    expect(costBreakdown(base)).toBe("3 units × 2 paid results × 0.2 s of reference CPU per unit × 1 credit per reference CPU-second");
    expect(costBreakdown({ ...base, chunks: 1, quorum: 1, replicas: 1, price: 2500 })).toBe(
      "1 unit × 1 paid result × 0.6 s of reference CPU per unit × 2.5 credits per reference CPU-second",
    );
    // An iterative job's work covers every round it may run.
    expect(costBreakdown({ ...base, cpuSeconds: 60, chunks: 4, maxRounds: 5 })).toBe(
      "4 units × 2 paid results × 3 s of reference CPU per unit × 1 credit per reference CPU-second × up to 5 rounds",
    );
  });

  it("shows seconds with two significant figures and proposes measured figures rounded up", () => {
    expect([seconds(0.02), seconds(0.0234), seconds(1.5), seconds(12.4), seconds(3600)]).toEqual(["0.02 s", "0.023 s", "1.5 s", "12 s", "3,600 s"]);
    expect(proposedCpuSeconds(0.0234)).toBe(0.024);
    expect(proposedCpuSeconds(0.02)).toBe(0.02);
    expect(proposedCpuSeconds(1)).toBe(1);
    expect(proposedCpuSeconds(1.01)).toBe(1.1);
    expect(proposedCpuSeconds(123)).toBe(130);
    expect(proposedCpuSeconds(0.00001)).toBe(0.001);
  });
});
