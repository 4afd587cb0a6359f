import { describe, expect, it } from "vitest";
import { pi, unitSeed } from "../../worker/kernels/pi";
import { ringerInput, volunteerParams } from "../../server/coordinator/ringers";

describe("a pi ringer", () => {
  it("cannot be told from the job's real units by the params its tasks carry", () => {
    const params = { samples: 40_000, seed: 12345 };
    const units = pi.split(pi.params.parse(params), 4);
    // With the job's seed a host could list every real unit's seed (unitSeed(seed, i)) and
    // spot the ringer's fresh one; its tasks do not carry it.
    expect(units.map((u) => u.input.seed)).toEqual([0, 1, 2, 3].map((i) => unitSeed(12345, i)));
    const sent = volunteerParams("pi", params);
    expect(sent).toEqual({ samples: 40_000 });
    // What the kernel runs on is the unit's input: the answer is the same without the job's seed.
    expect(pi.run(pi.params.parse(sent), units[2].input)).toEqual(pi.run(pi.params.parse(params), units[2].input));
    const ringer = ringerInput("pi", units[0].input, Math.random) as { seed: number; samples: number };
    expect(ringer.samples).toBe(units[0].input.samples);
    expect(units.map((u) => u.input.seed)).not.toContain(ringer.seed);
  });

  it("leaves other kernels' params as they are", () => {
    const params = { width: 64, height: 64, maxIter: 100 };
    expect(volunteerParams("mandelbrot", params)).toBe(params);
  });
});
