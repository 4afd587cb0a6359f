import { describe, expect, it } from "vitest";
import { mergeRounds } from "../../app/(portal)/jobs/[id]/mergeRounds";

// The job page's rounds as jobs.watch updates them: after its first update, each carries only
// the rounds after the last ended one it had sent.

const r = (round: number, latencyMs: number | null = 10) => ({ round, latencyMs });

describe("mergeRounds", () => {
  it("takes an update with every round as it is", () => {
    expect(mergeRounds([r(1), r(2)], { rounds: [r(1), r(2), r(3)], roundsAfter: null })).toEqual([r(1), r(2), r(3)]);
  });

  it("keeps the rounds up to roundsAfter and takes the rest from the update, the unfinished one replaced", () => {
    const held = [r(1), r(2), r(3, null)];
    expect(mergeRounds(held, { rounds: [r(3, 12), r(4, null)], roundsAfter: 2 })).toEqual([r(1), r(2), r(3, 12), r(4, null)]);
    expect(mergeRounds(held, { rounds: [], roundsAfter: 3 })).toEqual([r(1), r(2), r(3, null)]);
  });
});
