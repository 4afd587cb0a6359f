import { describe, expect, it } from "vitest";
import { Throughput } from "../../server/coordinator/progress";

describe("Throughput", () => {
  it("is 0 before anything finished", () => {
    expect(new Throughput().rate(1_000_000)).toBe(0);
  });

  it("counts completions per second over the window, at least over one second", () => {
    const t = new Throughput(10_000);
    const start = 1_000_000;
    // 50 a second for 4 s.
    for (let ms = 0; ms < 4000; ms += 20) t.record(start + ms);
    expect(t.rate(start + 4000)).toBeCloseTo(50, 0);
    // Half a second in, 25 completions read as 25/s (the span is at least a second).
    const u = new Throughput(10_000);
    for (let ms = 0; ms < 500; ms += 20) u.record(start + ms);
    expect(u.rate(start + 500)).toBeCloseTo(25, 0);
  });

  it("forgets what fell out of the window, also after a long silence", () => {
    const t = new Throughput(1000);
    for (let ms = 0; ms < 1000; ms += 10) t.record(ms + 5000);
    expect(t.rate(6000)).toBeCloseTo(100, 0);
    expect(t.rate(6600)).toBeLessThan(50);
    expect(t.rate(60_000)).toBe(0);
    t.record(60_000, 3);
    expect(t.rate(60_000)).toBeCloseTo(3, 0);
  });

  it("records 100,000 completions a second in constant time each", () => {
    const t = new Throughput(10_000);
    for (let i = 0; i < 1_000_000; i++) t.record(1_000_000 + i / 100);
    expect(t.rate(1_010_000)).toBeCloseTo(100_000, -3);
  });
});
