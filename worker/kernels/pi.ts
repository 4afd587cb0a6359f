import { z } from "zod";
import type { Kernel } from "./types";
import { fmix32 } from "./hash";

/** Reference CPU-ms per sample (xoshiro128**, 2 draws per sample; ~5 ns on Node 20). */
export const PI_MS_PER_SAMPLE = 5e-6;
/** Reference CPU-ms of fixed cost per unit (message passing, set-up). */
export const PI_MS_PER_UNIT = 0.5;

const TWO_POW_32 = 4294967296;

export const piParams = z.object({
  /** Total samples: at least 1000, at most 1e11 (~8 reference CPU-minutes in total). */
  samples: z.number().int().min(1000).max(1e11).default(20_000_000),
  /** Random seed; the job service fills one at submit so replicas of a unit agree. */
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
})
  // A parameter it does not know is refused by name, not ignored (a typo would go unnoticed).
  .strict();
export type PiParams = z.infer<typeof piParams>;

export interface PiInput {
  /** Per-unit seed, a safe integer derived from the job seed and the unit index. */
  seed: number;
  samples: number;
}

export const piOutput = z
  .object({
    inside: z.number().int().min(0),
    samples: z.number().int().min(1).max(1e11),
  })
  .strict()
  .refine((o) => o.inside <= o.samples, { message: "inside exceeds samples" });
export type PiOutput = z.infer<typeof piOutput>;

export interface PiResult {
  estimate: number;
  inside: number;
  samples: number;
}

/** Splits a non-negative safe integer into its low and high 32-bit words. */
function words(n: number): [number, number] {
  return [n % TWO_POW_32 >>> 0, Math.floor(n / TWO_POW_32) >>> 0];
}

/**
 * 53-bit unit seeds: with 32 bits, 10,000 units would collide (identical streams) about
 * 1% of the time; with 53 bits, never in practice.
 */
export function unitSeed(jobSeed: number, index: number): number {
  const [lo, hi] = words(jobSeed);
  const a = fmix32(lo ^ fmix32(index ^ 0x9e3779b9));
  const b = fmix32(hi ^ fmix32(a ^ index ^ 0x7f4a7c15));
  return (b & 0x1fffff) * TWO_POW_32 + a;
}

export const pi: Kernel<PiParams, PiInput, PiOutput, PiResult> = {
  name: "pi",
  title: "Monte Carlo π",
  description:
    "Estimates π by drawing random points in the unit square and counting those inside the quarter circle.",
  params: piParams,
  output: piOutput,

  maxChunks: (p) => Math.max(1, Math.min(10_000, Math.floor(p.samples / 1000))),

  split(p, chunks) {
    const n = Math.max(1, Math.min(Math.floor(chunks), pi.maxChunks(p)));
    const base = Math.floor(p.samples / n);
    const extra = p.samples - base * n;
    const seed = p.seed ?? 0;
    return Array.from({ length: n }, (_, i) => {
      const samples = base + (i < extra ? 1 : 0);
      return {
        input: { seed: unitSeed(seed, i), samples },
        work: PI_MS_PER_UNIT + samples * PI_MS_PER_SAMPLE,
      };
    });
  },

  run(_p, input) {
    const { seed, samples } = input;
    if (!(Number.isSafeInteger(seed) && seed >= 0 && Number.isInteger(samples) && samples >= 1 && samples <= 1e11)) {
      throw new Error(`pi: bad unit input ${JSON.stringify(input)}`);
    }
    const [lo, hi] = words(seed);
    // xoshiro128** state from the seed; fmix32 of distinct values keeps it non-zero in practice,
    // and the `| 1` guarantees it.
    let s0 = fmix32(lo ^ 0x243f6a88);
    let s1 = fmix32(hi ^ 0x85a308d3);
    let s2 = fmix32((lo + 0x13198a2e) ^ fmix32(hi));
    let s3 = fmix32((hi + 0x03707344) ^ fmix32(lo)) | 1;
    let inside = 0;
    const INV = 1 / TWO_POW_32;
    for (let i = 0; i < samples; i++) {
      let r = Math.imul(s1, 5);
      r = Math.imul((r << 7) | (r >>> 25), 9);
      let t = s1 << 9;
      s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = (s3 << 11) | (s3 >>> 21);
      const x = (r >>> 0) * INV;

      r = Math.imul(s1, 5);
      r = Math.imul((r << 7) | (r >>> 25), 9);
      t = s1 << 9;
      s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = (s3 << 11) | (s3 >>> 21);
      const y = (r >>> 0) * INV;

      if (x * x + y * y < 1) inside++;
    }
    return { inside, samples };
  },

  reduce(p, outputs) {
    let inside = 0;
    let samples = 0;
    for (const o of outputs) {
      inside += o.inside;
      samples += o.samples;
    }
    if (samples !== p.samples) {
      throw new Error(`pi: unit outputs cover ${samples} samples, job asked for ${p.samples}`);
    }
    return { estimate: (4 * inside) / samples, inside, samples };
  },
};
