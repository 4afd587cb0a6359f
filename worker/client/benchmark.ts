import { pi } from "../kernels/pi";

// A host's benchmark score: how fast it runs a fixed workload relative to the reference
// machine (score 1.0). CPU time × score = reference CPU time (see docs/pricing.md).

/** Scores outside this range are clamped: a broken timer must not make a host look 1000× faster. */
export const BENCHMARK_MIN = 0.05;
export const BENCHMARK_MAX = 50;
/** Samples of the pi kernel timed (on a fixed seed): ~15 ms on the reference machine. */
export const BENCHMARK_SAMPLES = 3_000_000;
/** Milliseconds the reference machine takes for BENCHMARK_SAMPLES (calibrated, Node 20). */
export const BENCHMARK_REFERENCE_MS = 15;

/** A score within [BENCHMARK_MIN, BENCHMARK_MAX]; anything not a positive number counts as 1. */
export function clampBenchmark(score: unknown): number {
  if (typeof score !== "number" || !Number.isFinite(score) || score <= 0) return 1;
  return Math.min(BENCHMARK_MAX, Math.max(BENCHMARK_MIN, score));
}

/** Score from the time the workload took (best of the runs, to discount a busy moment). */
export function scoreFromMs(ms: number): number {
  return clampBenchmark(BENCHMARK_REFERENCE_MS / Math.max(ms, 1e-3));
}

/**
 * Times the pi kernel on a fixed input (a warm-up, then the best of 3 runs; ~50 ms in all
 * on the reference machine). Runs on the caller's thread, once per client.
 */
export function measureBenchmark(now: () => number = () => performance.now()): number {
  pi.run({ samples: 1000 }, { seed: 12345, samples: 200_000 });
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const start = now();
    pi.run({ samples: 1000 }, { seed: 12345, samples: BENCHMARK_SAMPLES });
    best = Math.min(best, now() - start);
  }
  return scoreFromMs(best);
}
