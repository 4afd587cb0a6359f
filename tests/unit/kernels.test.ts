import { describe, expect, it } from "vitest";
import { decodeBase64, encodeBase64 } from "../../worker/kernels/base64";
import { getKernel, kernels } from "../../worker/kernels/index";
import { escapeCount, mandelbrot, MANDELBROT_MS_PER_ITER, MANDELBROT_MS_PER_PIXEL, MANDELBROT_MS_PER_UNIT } from "../../worker/kernels/mandelbrot";
import { pi } from "../../worker/kernels/pi";
import { primes } from "../../worker/kernels/primes";
import { createNodePool } from "../../worker/node/pool";
import { runTask, type TaskRun } from "../../worker/runtime/runTask";

/** What the job service and volunteers do together: split, run every unit, reduce. */
function runJob<P, I, O, R>(k: { params: { parse(x: unknown): P }; split(p: P, n: number): Array<{ input: I }>; run(p: P, i: I): O; reduce(p: P, o: O[]): R }, raw: unknown, chunks: number): R {
  const params = k.params.parse(raw);
  return k.reduce(params, k.split(params, chunks).map((u) => k.run(params, u.input)));
}

function naivePrimeCount(lo: number, hi: number): { count: number; last: number | null } {
  let count = 0;
  let last: number | null = null;
  for (let n = Math.max(lo, 2); n < hi; n++) {
    let prime = true;
    for (let d = 2; d * d <= n; d++) {
      if (n % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) {
      count++;
      last = n;
    }
  }
  return { count, last };
}

function pixels(data: string): Uint16Array {
  const bytes = decodeBase64(data);
  const out = new Uint16Array(bytes.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = bytes[2 * i] | (bytes[2 * i + 1] << 8);
  return out;
}

describe("kernel registry", () => {
  it("finds built-in kernels by name and nothing else", () => {
    expect(Object.keys(kernels).sort()).toEqual(["kmeans", "mandelbrot", "pi", "primes"]);
    expect(getKernel("pi")).toBe(pi);
    expect(getKernel("constructor")).toBeUndefined();
    expect(() => runTask({ kernel: "nope", params: {}, input: {} })).toThrow(/Unknown kernel "nope"/);
  });
});

describe("base64", () => {
  it("round-trips every length and agrees with Buffer", () => {
    for (let n = 0; n < 40; n++) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 97 + n * 31) & 255);
      const s = encodeBase64(bytes);
      expect(s).toBe(Buffer.from(bytes).toString("base64"));
      expect(decodeBase64(s)).toEqual(bytes);
    }
    expect(() => decodeBase64("abc")).toThrow();
    expect(() => decodeBase64("ab!d")).toThrow();
  });
});

describe("pi", () => {
  it("estimates π within 0.01 from 2e6 samples", () => {
    const r = runJob(pi, { samples: 2_000_000, seed: 12345 }, 8);
    expect(r.samples).toBe(2_000_000);
    expect(Math.abs(r.estimate - Math.PI)).toBeLessThan(0.01);
  });

  it("is deterministic for a seed and differs between seeds", () => {
    const a = runJob(pi, { samples: 200_000, seed: 7 }, 4);
    expect(runJob(pi, { samples: 200_000, seed: 7 }, 4)).toEqual(a);
    expect(runJob(pi, { samples: 200_000, seed: 8 }, 4)).not.toEqual(a);
    // Seeds above 2^32 matter too.
    const big = 2 ** 40;
    expect(runJob(pi, { samples: 200_000, seed: big }, 4)).not.toEqual(runJob(pi, { samples: 200_000, seed: big + 2 ** 32 }, 4));
    const unit = { seed: 99, samples: 10_000 };
    expect(pi.run(pi.params.parse({}), unit)).toEqual(pi.run(pi.params.parse({}), unit));
  });

  it("splits samples into shares that sum exactly, with distinct seeds", () => {
    const p = pi.params.parse({ samples: 1_000_003, seed: 1 });
    const units = pi.split(p, 7);
    expect(units).toHaveLength(7);
    expect(units.reduce((s, u) => s + u.input.samples, 0)).toBe(1_000_003);
    const shares = units.map((u) => u.input.samples);
    expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
    expect(new Set(units.map((u) => u.input.seed)).size).toBe(7);
    for (const u of units) {
      expect(Number.isSafeInteger(u.input.seed)).toBe(true);
      expect(u.work).toBeGreaterThan(0);
    }
    expect(pi.maxChunks(p)).toBe(1000);
    expect(pi.split(p, 1e9)).toHaveLength(1000);
    expect(pi.maxChunks(pi.params.parse({ samples: 1e11 }))).toBe(10_000);
  });

  it("defaults and bounds its params", () => {
    expect(pi.params.parse({})).toEqual({ samples: 20_000_000 });
    for (const bad of [{ samples: 999 }, { samples: 1e11 + 1 }, { samples: 1.5e6 + 0.5 }, { samples: "1e6" }, { seed: -1 }]) {
      expect(pi.params.safeParse(bad).success).toBe(false);
    }
  });

  it("rejects garbage outputs", () => {
    expect(pi.output.safeParse({ inside: 3, samples: 4 }).success).toBe(true);
    for (const bad of [
      { inside: 5, samples: 4 },
      { inside: -1, samples: 4 },
      { inside: 1.5, samples: 4 },
      { inside: "3", samples: 4 },
      { inside: 3 },
      { inside: 3, samples: 4, extra: 1 },
      null,
    ]) {
      expect(pi.output.safeParse(bad).success).toBe(false);
    }
  });

  it("refuses to reduce outputs that do not cover the job", () => {
    const p = pi.params.parse({ samples: 2000, seed: 1 });
    const outs = pi.split(p, 2).map((u) => pi.run(p, u.input));
    expect(() => pi.reduce(p, outs.slice(1))).toThrow(/samples/);
  });
});

describe("primes", () => {
  it("counts π(10^6) = 78498", () => {
    expect(runJob(primes, { to: 1_000_000 }, 1)).toEqual({ from: 0, to: 1_000_000, count: 78498, largest: 999983 });
  });

  it("counts π(10^7) = 664579 from 7 uneven chunks", () => {
    const p = primes.params.parse({ to: 10_000_000 });
    const edges = [0, 2, 3, 1000, 123_457, 5_000_000, 5_000_001, 10_000_000];
    const outs = edges.slice(1).map((hi, i) => primes.run(p, { lo: edges[i], hi }));
    expect(outs[0]).toEqual({ lo: 0, hi: 2, count: 0, last: null });
    expect(outs[1]).toEqual({ lo: 2, hi: 3, count: 1, last: 2 });
    expect(primes.reduce(p, outs)).toEqual({ from: 0, to: 10_000_000, count: 664579, largest: 9999991 });
    expect(runJob(primes, { to: 10_000_000 }, 7).count).toBe(664579);
  });

  it("agrees with trial division just above 10^9 and just below 10^12", () => {
    const from = 1e9;
    const p = primes.params.parse({ from, to: from + 1e6 });
    const whole = primes.run(p, { lo: from, hi: from + 1e6 });
    expect(runJob(primes, { from, to: from + 1e6 }, 13)).toEqual({ from, to: from + 1e6, count: whole.count, largest: whole.last });
    expect(primes.run(p, { lo: from, hi: from + 3000 })).toEqual({ lo: from, hi: from + 3000, ...naivePrimeCount(from, from + 3000) });
    const top = 1e12;
    expect(primes.run(p, { lo: top - 2000, hi: top })).toEqual({ lo: top - 2000, hi: top, ...naivePrimeCount(top - 2000, top) });
  });

  it("sieves a range longer than one segment the same in one unit or many", () => {
    const from = 123_456_789;
    const to = from + 3_000_000; // about 3 segments of 2^19 odd numbers
    expect(runJob(primes, { from, to }, 1)).toEqual(runJob(primes, { from, to }, 37));
  });

  it("splits into contiguous ranges, at most one unit per 1000 numbers", () => {
    const p = primes.params.parse({ from: 10, to: 5010 });
    expect(primes.maxChunks(p)).toBe(5);
    const units = primes.split(p, 100);
    expect(units.map((u) => u.input)).toEqual([
      { lo: 10, hi: 1010 },
      { lo: 1010, hi: 2010 },
      { lo: 2010, hi: 3010 },
      { lo: 3010, hi: 4010 },
      { lo: 4010, hi: 5010 },
    ]);
    expect(primes.maxChunks(primes.params.parse({ to: 1e10 }))).toBe(10_000);
  });

  it("defaults and bounds its params", () => {
    expect(primes.params.parse({})).toEqual({ from: 0, to: 50_000_000 });
    for (const bad of [{ from: 10, to: 10 }, { from: -1 }, { to: 1e12 + 1 }, { from: 1, to: 1e10 + 2 }, { to: 2.5 }]) {
      expect(primes.params.safeParse(bad).success).toBe(false);
    }
    expect(primes.params.safeParse({ from: 1e12 - 1e10, to: 1e12 }).success).toBe(true);
  });

  it("rejects garbage outputs", () => {
    expect(primes.output.safeParse({ lo: 0, hi: 10, count: 4, last: 7 }).success).toBe(true);
    for (const bad of [
      { lo: 0, hi: 10, count: -1, last: 7 },
      { lo: 0, hi: 10, count: 4, last: null },
      { lo: 0, hi: 10, count: 0, last: 7 },
      { lo: 0, hi: 10, count: 4, last: 11 },
      { lo: 0, hi: 10, count: 9, last: 7 },
      { lo: 10, hi: 10, count: 0, last: null },
      { lo: 0, hi: 10, count: "4", last: 7 },
      { lo: 0, hi: 10, count: 4, last: 7, note: "hi" },
    ]) {
      expect(primes.output.safeParse(bad).success).toBe(false);
    }
  });

  it("refuses to reduce ranges with a gap or that stop short", () => {
    const p = primes.params.parse({ to: 3000 });
    const outs = primes.split(p, 3).map((u) => primes.run(p, u.input));
    expect(() => primes.reduce(p, [outs[0], outs[2]])).toThrow(/starting at 1000/);
    expect(() => primes.reduce(p, outs.slice(0, 2))).toThrow(/missing/);
  });
});

describe("mandelbrot", () => {
  const raw = { width: 64, height: 48, maxIter: 200 };

  it("estimates a unit's work from the view's points, inside a bulb of the set as outside it", () => {
    const work = (view: object, chunks: number) => mandelbrot.split(mandelbrot.params.parse(view), chunks).map((u) => u.work);
    const overhead = (pixels: number, units: number) => pixels * MANDELBROT_MS_PER_PIXEL + units * MANDELBROT_MS_PER_UNIT;
    // Inside a bulb (not the main cardioid): every pixel runs the loop to maxIter. Estimated
    // from maxIter alone, this view's units were priced at 1/60 of their work.
    const bulb = work({ width: 64, height: 64, maxIter: 10_000, centerX: -0.1226, centerY: 0.7449, scale: 1e-6 }, 8);
    const loops = 64 * 64 * 10_000 * MANDELBROT_MS_PER_ITER;
    expect(bulb.reduce((a, b) => a + b, 0)).toBeCloseTo(overhead(64 * 64, 8) + loops, 0);
    // Far outside: every point escapes at once, whatever maxIter.
    const outside = work({ width: 64, height: 64, maxIter: 10_000, centerX: 3.5, centerY: 3.5, scale: 0.5 }, 8);
    expect(outside.reduce((a, b) => a + b, 0)).toBeCloseTo(overhead(64 * 64, 8), 3);
    // Inside the main cardioid the loop is skipped (a test of c): the pixels alone.
    const cardioid = work({ width: 64, height: 64, maxIter: 10_000, centerX: -0.2, centerY: 0, scale: 0.1 }, 8);
    expect(cardioid.reduce((a, b) => a + b, 0)).toBeCloseTo(overhead(64 * 64, 8), 3);
    // The default view: within a few times of its escape counts, band by band.
    const p = mandelbrot.params.parse({});
    for (const u of mandelbrot.split(p, 12)) {
      const { y0, y1 } = u.input;
      let iters = 0;
      const step = p.scale / p.width;
      for (let py = y0; py < y1; py++) {
        for (let px = 0; px < p.width; px++) {
          const cx = p.centerX + (px - p.width / 2) * step;
          const cy = p.centerY - (py - p.height / 2) * step;
          const q = (cx - 0.25) ** 2 + cy ** 2;
          const skipped = q * (q + (cx - 0.25)) <= 0.25 * cy * cy || (cx + 1) ** 2 + cy ** 2 <= 0.0625;
          if (!skipped) iters += escapeCount(cx, cy, p.maxIter);
        }
      }
      const exact = overhead((y1 - y0) * p.width, 1) + iters * MANDELBROT_MS_PER_ITER;
      expect(u.work / exact).toBeGreaterThan(0.5);
      expect(u.work / exact).toBeLessThan(4);
    }
  });

  it("reassembles bands into the same image as one unit", () => {
    const one = runJob(mandelbrot, raw, 1);
    expect(one).toMatchObject({ width: 64, height: 48, maxIter: 200, encoding: "u16le-base64" });
    expect(pixels(one.data)).toHaveLength(64 * 48);
    expect(runJob(mandelbrot, raw, 5)).toEqual(one);
    expect(runJob(mandelbrot, raw, 48)).toEqual(one);
    expect(mandelbrot.split(mandelbrot.params.parse(raw), 1000)).toHaveLength(48);
    const counts = pixels(one.data);
    expect(counts.some((c) => c === 200)).toBe(true);
    expect(counts.some((c) => c < 5)).toBe(true);
  });

  it("keeps (0,0) inside and lets (2,2) escape at once", () => {
    expect(escapeCount(0, 0, 300)).toBe(300);
    expect(escapeCount(2, 2, 300)).toBe(0);
    expect(escapeCount(-1, 0, 300)).toBe(300);
    const slow = escapeCount(0.26, 0, 1000); // just right of the cusp: escapes, slowly
    expect(slow).toBeGreaterThan(10);
    expect(slow).toBeLessThan(1000);
    // The centre pixel (width/2, height/2) sits exactly on (centerX, centerY).
    const at = (centerX: number, centerY: number) => {
      const img = runJob(mandelbrot, { width: 16, height: 16, maxIter: 50, centerX, centerY, scale: 0.01 }, 4);
      return pixels(img.data)[8 * 16 + 8];
    };
    expect(at(0, 0)).toBe(50);
    expect(at(2, 2)).toBe(0);
  });

  it("defaults and bounds its params", () => {
    expect(mandelbrot.params.parse({})).toEqual({ width: 800, height: 600, maxIter: 400, centerX: -0.5, centerY: 0, scale: 3 });
    for (const bad of [{ width: 8 }, { height: 5000 }, { maxIter: 20_000 }, { scale: 0 }, { centerX: Infinity }, { width: 100.5 }]) {
      expect(mandelbrot.params.safeParse(bad).success).toBe(false);
    }
  });

  it("rejects garbage outputs", () => {
    const p = mandelbrot.params.parse(raw);
    const good = mandelbrot.run(p, { y0: 3, y1: 5 });
    expect(mandelbrot.output.safeParse(good).success).toBe(true);
    for (const bad of [
      { ...good, data: good.data.slice(4) }, // not a whole number of rows
      { ...good, data: "!!!!" },
      { ...good, data: 42 },
      { ...good, y1: 3 },
      { ...good, y0: -1 },
      { ...good, extra: true },
      { y0: 3, y1: 5 },
    ]) {
      expect(mandelbrot.output.safeParse(bad).success).toBe(false);
    }
  });

  it("refuses to reduce missing, misplaced or inconsistent bands", () => {
    const p = mandelbrot.params.parse(raw);
    const bands = mandelbrot.split(p, 4).map((u) => mandelbrot.run(p, u.input));
    expect(() => mandelbrot.reduce(p, [bands[0], bands[2], bands[3]])).toThrow(/starting at row 12/);
    expect(() => mandelbrot.reduce(p, bands.slice(0, 3))).toThrow(/missing/);
    expect(() => mandelbrot.reduce(p, [bands[1], bands[0], bands[2], bands[3]])).toThrow();
    // A band sized for another width.
    const narrow = mandelbrot.run(mandelbrot.params.parse({ ...raw, width: 32 }), { y0: 0, y1: 12 });
    expect(() => mandelbrot.reduce(p, [narrow, ...bands.slice(1)])).toThrow(/bytes/);
    // Counts above maxIter cannot come from this job.
    const high = encodeBase64(new Uint8Array(12 * 64 * 2).fill(255));
    expect(() => mandelbrot.reduce(p, [{ ...bands[0], data: high }, ...bands.slice(1)])).toThrow(/maxIter/);
  });
});

describe("Node worker threads", () => {
  it("compute the same outputs as runTask in-process", { timeout: 60_000 }, async () => {
    const tasks: TaskRun[] = [];
    const piParams = pi.params.parse({ samples: 400_000, seed: 3 });
    for (const u of pi.split(piParams, 3)) tasks.push({ kernel: "pi", params: piParams, input: u.input });
    const primesParams = primes.params.parse({ from: 1e9, to: 1e9 + 200_000 });
    for (const u of primes.split(primesParams, 2)) tasks.push({ kernel: "primes", params: primesParams, input: u.input });
    const mParams = mandelbrot.params.parse({ width: 80, height: 40 });
    for (const u of mandelbrot.split(mParams, 3)) tasks.push({ kernel: "mandelbrot", params: mParams, input: u.input });

    const pool = createNodePool({ threads: 2 });
    try {
      expect(pool.states()).toHaveLength(2);
      const results = await Promise.all(tasks.map((t) => pool.run(t)));
      expect(results.map((r) => r.output)).toEqual(tasks.map((t) => runTask(t).output));
      for (const r of results) expect(r.ms).toBeGreaterThanOrEqual(0);

      // A kernel error comes back as a rejection and the thread is replaced, not lost.
      await expect(pool.run({ kernel: "nope", params: {}, input: {} })).rejects.toThrow(/Unknown kernel/);
      expect((await pool.run(tasks[0])).output).toEqual(results[0].output);
      expect(pool.states()).toHaveLength(2);
    } finally {
      pool.terminate();
    }
  });
});
