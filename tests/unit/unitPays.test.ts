import { describe, expect, it } from "vitest";
import { compactPays, payOf } from "../../server/coordinator/live";

describe("a job's pay per unit", () => {
  it("is one figure when every unit pays the same", () => {
    const pays = compactPays(new Map([["u0", 7], ["u1", 7], ["u2", 7]]));
    expect(pays).toBe(7);
    expect(payOf(pays, "u1")).toBe(7);
  });

  it("stays by unit when units pay differently", () => {
    const map = new Map([["u0", 7], ["u1", 9]]);
    const pays = compactPays(map);
    expect(pays).toBe(map);
    expect([payOf(pays, "u0"), payOf(pays, "u1"), payOf(pays, "elsewhere")]).toEqual([7, 9, 0]);
  });

  it("is nothing for a job without units", () => {
    expect(compactPays(new Map())).toBe(0);
  });
});
