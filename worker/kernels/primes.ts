import { z } from "zod";
import type { Kernel } from "./types";

/**
 * Reference CPU-ms (measured on Node 20, one core): per number in the range, per base prime
 * (primes up to sqrt(hi)) for finding its first multiple, and per base prime and segment.
 */
export const PRIMES_MS_PER_NUMBER = 2e-6;
export const PRIMES_MS_PER_BASE_PRIME = 3e-5;
export const PRIMES_MS_PER_BASE_PRIME_SEGMENT = 1e-5;
export const PRIMES_MS_PER_UNIT = 0.5;

const MAX_TO = 1e12;
const MAX_SPAN = 1e10;
/** One byte per odd number: 256 KiB covers 512 Ki numbers and stays in L2 cache. */
const SEGMENT_BYTES = 256 * 1024;

export const primesParams = z
  .object({
    /** Inclusive lower bound, >= 0. */
    from: z.number().int().min(0).max(MAX_TO).default(0),
    /** Exclusive upper bound, <= 1e12, with 0 < to - from <= 1e10 (~25 reference CPU-seconds). */
    to: z.number().int().min(1).max(MAX_TO).default(50_000_000),
  })
  // A parameter it does not know is refused by name, not ignored (a typo would go unnoticed).
  .strict()
  .refine((p) => p.to > p.from, { message: "to must be greater than from", path: ["to"] })
  .refine((p) => p.to - p.from <= MAX_SPAN, { message: `to - from must be at most ${MAX_SPAN}`, path: ["to"] });
export type PrimesParams = z.infer<typeof primesParams>;

export interface PrimesInput {
  lo: number;
  hi: number;
}

export const primesOutput = z
  .object({
    lo: z.number().int().min(0).max(MAX_TO),
    hi: z.number().int().min(1).max(MAX_TO),
    count: z.number().int().min(0),
    last: z.number().int().min(2).max(MAX_TO).nullable(),
  })
  .strict()
  .refine((o) => o.hi > o.lo, { message: "empty range" })
  // Above 2, primes are odd: no range holds more than half of its numbers plus one.
  .refine((o) => o.count <= Math.ceil((o.hi - o.lo) / 2) + 1, { message: "count exceeds range" })
  .refine((o) => (o.count === 0) === (o.last === null), { message: "count and last disagree" })
  .refine((o) => o.last === null || (o.last >= o.lo && o.last < o.hi), { message: "last outside range" });
export type PrimesOutput = z.infer<typeof primesOutput>;

export interface PrimesResult {
  from: number;
  to: number;
  count: number;
  largest: number | null;
}

// Base primes only grow with the largest hi seen, so keeping them is pure memoisation.
let basePrimes = new Float64Array(0);
let baseLimit = 1;

/** All primes <= limit (at most 1e6 here), by a plain sieve. */
function primesUpTo(limit: number): Float64Array {
  if (limit <= baseLimit) return basePrimes;
  const composite = new Uint8Array(limit + 1);
  const found: number[] = [];
  for (let i = 2; i <= limit; i++) {
    if (composite[i]) continue;
    found.push(i);
    for (let j = i * i; j <= limit; j += i) composite[j] = 1;
  }
  basePrimes = Float64Array.from(found);
  baseLimit = limit;
  return basePrimes;
}

/** Counts the primes in [lo, hi) with a segmented sieve over odd numbers. */
export function countPrimes(lo: number, hi: number): { count: number; last: number | null } {
  let count = 0;
  let last: number | null = null;
  if (lo <= 2 && hi > 2) {
    count = 1;
    last = 2;
  }
  // Odd n live at index (n - segStart) / 2 of the segment beginning at segStart; starting at
  // 3 or above keeps 1, which no base prime crosses out, from being counted.
  let segStart = Math.max(lo, 3);
  if (segStart % 2 === 0) segStart++;
  if (segStart >= hi) return { count, last };
  const small = primesUpTo(Math.floor(Math.sqrt(hi - 1)));
  const sieve = new Uint8Array(SEGMENT_BYTES);
  // Per base prime, the index of its next odd multiple in the current segment, carried from
  // segment to segment: a float division per prime and segment costs more than the sieving.
  const next = new Float64Array(small.length);
  let active = 1; // small[0] is 2: odd numbers need no crossing out by 2.
  for (; segStart < hi; segStart += 2 * SEGMENT_BYTES) {
    const size = Math.min(SEGMENT_BYTES, Math.ceil((hi - segStart) / 2));
    const segEnd = segStart + 2 * size; // exclusive
    sieve.fill(0, 0, size);
    while (active < small.length && small[active] * small[active] < segEnd) {
      const p = small[active];
      let first = p * p >= segStart ? p * p : Math.ceil(segStart / p) * p;
      if (first % 2 === 0) first += p;
      next[active++] = (first - segStart) / 2;
    }
    for (let k = 1; k < active; k++) {
      const p = small[k];
      let j = next[k];
      for (; j < size; j += p) sieve[j] = 1;
      next[k] = j - size;
    }
    for (let j = 0; j < size; j++) {
      if (sieve[j] === 0) {
        count++;
        last = segStart + 2 * j;
      }
    }
  }
  return { count, last };
}

export const primes: Kernel<PrimesParams, PrimesInput, PrimesOutput, PrimesResult> = {
  name: "primes",
  title: "Prime counting",
  description: "Counts the primes in [from, to) with a segmented sieve of Eratosthenes.",
  params: primesParams,
  output: primesOutput,

  maxChunks: (p) => Math.max(1, Math.min(10_000, Math.ceil((p.to - p.from) / 1000))),

  split(p, chunks) {
    const n = Math.max(1, Math.min(Math.floor(chunks), primes.maxChunks(p)));
    const span = p.to - p.from;
    const base = Math.floor(span / n);
    const extra = span - base * n;
    const units: Array<{ input: PrimesInput; work: number }> = [];
    let lo = p.from;
    for (let i = 0; i < n; i++) {
      const hi = lo + base + (i < extra ? 1 : 0);
      // pi(sqrt(hi)) ~ sqrt(hi) / ln(sqrt(hi)) base primes.
      const root = Math.sqrt(hi);
      const basePrimes = root / Math.max(1, Math.log(root));
      const segments = Math.ceil((hi - lo) / (2 * SEGMENT_BYTES));
      const work =
        PRIMES_MS_PER_UNIT +
        (hi - lo) * PRIMES_MS_PER_NUMBER +
        basePrimes * (PRIMES_MS_PER_BASE_PRIME + segments * PRIMES_MS_PER_BASE_PRIME_SEGMENT);
      units.push({ input: { lo, hi }, work });
      lo = hi;
    }
    return units;
  },

  run(_p, { lo, hi }) {
    if (!(Number.isInteger(lo) && Number.isInteger(hi) && 0 <= lo && lo < hi && hi <= MAX_TO)) {
      throw new Error(`primes: bad range [${lo}, ${hi})`);
    }
    return { lo, hi, ...countPrimes(lo, hi) };
  },

  reduce(p, outputs) {
    let next = p.from;
    let count = 0;
    let largest: number | null = null;
    for (const o of outputs) {
      if (o.lo !== next || o.hi <= o.lo) {
        throw new Error(`primes: expected a range starting at ${next}, got [${o.lo}, ${o.hi})`);
      }
      count += o.count;
      if (o.last !== null) largest = o.last;
      next = o.hi;
    }
    if (next !== p.to) throw new Error(`primes: range [${next}, ${p.to}) is missing`);
    return { from: p.from, to: p.to, count, largest };
  },
};
