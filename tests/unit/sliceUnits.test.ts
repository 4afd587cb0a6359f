import { describe, expect, it } from "vitest";
import { SLICE_UNITS, slicesOf, sliceUnitsFor } from "../../server/cluster/slices";

describe("slice size of a new job", () => {
  it("is 256 units on one node, and cuts a small job into two slices per node of a cluster", () => {
    expect(sliceUnitsFor(250, 0)).toBe(SLICE_UNITS);
    expect(sliceUnitsFor(250, 1)).toBe(SLICE_UNITS);
    expect(sliceUnitsFor(250, 3)).toBe(42);
    expect(slicesOf("j", 0, 250, sliceUnitsFor(250, 3)).map((s) => s.last - s.first)).toEqual([42, 42, 42, 42, 42, 40]);
    expect(sliceUnitsFor(10_000, 3)).toBe(SLICE_UNITS); // big jobs keep big slices
    expect(sliceUnitsFor(50, 3)).toBe(16); // never a slice too small to be worth a claim
    expect(slicesOf("j", 0, 10, sliceUnitsFor(10, 4))).toEqual([{ id: "j:0:0", jobId: "j", round: 0, first: 0, last: 10 }]);
  });
});
