import { describe, expect, it } from "vitest";
import { BENCHMARK_MAX, BENCHMARK_MIN, BENCHMARK_REFERENCE_MS, clampBenchmark, measureBenchmark, scoreFromMs } from "../../worker/client/benchmark";
import { helloSchema } from "../../worker/protocol/messages";

describe("benchmark score", () => {
  it("is clamped to its bounds, and anything that is not a positive number counts as 1", () => {
    expect(clampBenchmark(1.7)).toBe(1.7);
    expect(clampBenchmark(500)).toBe(BENCHMARK_MAX);
    expect(clampBenchmark(0.001)).toBe(BENCHMARK_MIN);
    for (const bad of [undefined, null, 0, -3, Number.NaN, Number.POSITIVE_INFINITY, "2"]) expect(clampBenchmark(bad)).toBe(1);
  });

  it("is the reference time over the measured time", () => {
    expect(scoreFromMs(BENCHMARK_REFERENCE_MS)).toBe(1);
    expect(scoreFromMs(BENCHMARK_REFERENCE_MS / 2)).toBe(2);
    expect(scoreFromMs(0)).toBe(BENCHMARK_MAX); // a broken timer cannot claim more than the bound
    expect(scoreFromMs(1e9)).toBe(BENCHMARK_MIN);
  });

  it("uses the best of its runs, timed with the clock it is given", () => {
    let t = 0;
    const laps = [0, BENCHMARK_REFERENCE_MS * 4, 0, BENCHMARK_REFERENCE_MS / 2, 0, BENCHMARK_REFERENCE_MS];
    expect(measureBenchmark(() => (t += laps.shift()!))).toBe(2);
    const real = measureBenchmark();
    expect(real).toBeGreaterThanOrEqual(BENCHMARK_MIN);
    expect(real).toBeLessThanOrEqual(BENCHMARK_MAX);
  });

  it("is optional and positive in hello", () => {
    const hello = { type: "hello", protocol: 2, volunteerId: "abcdefgh12", token: "0123456789abcdefXYZ", threads: 1 };
    expect(helloSchema.safeParse(hello).success).toBe(true);
    expect(helloSchema.safeParse({ ...hello, benchmark: 1.2 }).success).toBe(true);
    expect(helloSchema.safeParse({ ...hello, benchmark: 0 }).success).toBe(false);
    expect(helloSchema.safeParse({ ...hello, benchmark: -1 }).success).toBe(false);
  });
});
