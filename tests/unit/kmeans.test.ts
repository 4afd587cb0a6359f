import { describe, expect, it } from "vitest";
import { kmeans, kmeansInit, kmeansPoints, kmeansTrueCentres, KMEANS_CELL, type KmeansOutput, type KmeansParams, type KmeansState } from "../../worker/kernels/kmeans";
import { getKernel } from "../../worker/kernels/index";
import { runTask } from "../../worker/runtime/runTask";
import { outputDigest } from "../../server/coordinator/digest";

const rounds = kmeans.rounds!;

/** What an iterative job does, in this process: split, run every unit, step, until done. */
function runRounds(raw: Partial<KmeansParams>, chunks: number) {
  const p = kmeans.params.parse(raw);
  let state: KmeansState = rounds.init(p);
  const history: Array<{ round: number; metric: number; latencyMs: null; stats?: Record<string, number> }> = [];
  for (let round = 1; ; round++) {
    const outputs = rounds.splitRound(p, state, chunks).map((u) => kmeans.run(p, u.input));
    const s = rounds.step(p, state, outputs, round);
    history.push({ round, metric: s.metric, latencyMs: null, stats: s.stats });
    state = s.state;
    if (s.done) break;
  }
  return { p, state, history, result: rounds.finish(p, state, history) };
}

/** For each true centre, the distance to its nearest centroid; each centroid is used once. */
function matchCentres(truth: number[][], centroids: number[][]) {
  const used = new Set<number>();
  return truth.map((t) => {
    let best = -1;
    let bestD = Infinity;
    centroids.forEach((c, i) => {
      const d = Math.hypot(...c.map((v, k) => v - t[k]));
      if (d < bestD) [best, bestD] = [i, d];
    });
    expect(used.has(best), "two true centres matched the same centroid").toBe(false);
    used.add(best);
    return bestD;
  });
}

describe("kmeans kernel", () => {
  it("is registered, with defaults and bounds on its parameters", () => {
    expect(getKernel("kmeans")).toBe(kmeans);
    expect(kmeans.params.parse({})).toMatchObject({ points: 20_000, k: 4, dims: 2, spread: 1, maxRounds: 20, epsilon: 1e-4 });
    expect(kmeans.params.safeParse({ k: 1 }).success).toBe(false);
    expect(kmeans.params.safeParse({ k: 21 }).success).toBe(false);
    expect(kmeans.params.safeParse({ points: 1_000_001 }).success).toBe(false);
    expect(kmeans.params.safeParse({ maxRounds: 101 }).success).toBe(false);
  });

  it("generates the same data set from the same seed, around well-separated centres", () => {
    const p = kmeans.params.parse({ seed: 7, k: 9, points: 30_000, spread: 1.5 });
    expect(kmeansPoints(p, 100, 200)).toEqual(kmeansPoints(p, 100, 200));
    expect(kmeansPoints({ ...p, seed: 8 }, 100, 200)).not.toEqual(kmeansPoints(p, 100, 200));
    const centres = kmeansTrueCentres(p);
    expect(centres).toHaveLength(9);
    for (let i = 0; i < centres.length; i++) {
      for (let j = 0; j < i; j++) expect(Math.hypot(centres[i][0] - centres[j][0], centres[i][1] - centres[j][1])).toBeGreaterThan(KMEANS_CELL - 6 - 1e-9);
    }
    // The noise has the asked standard deviation and every cluster gets its share of points.
    const { points, clusters } = kmeansPoints(p, 0, p.points);
    let sq = 0;
    for (let i = 0; i < points.length; i++) for (let d = 0; d < 2; d++) sq += (points[i][d] - centres[clusters[i]][d]) ** 2;
    expect(Math.sqrt(sq / (2 * points.length))).toBeCloseTo(1.5, 1);
    for (let c = 0; c < 9; c++) expect(clusters.filter((x) => x === c).length).toBeGreaterThan(p.points / 9 * 0.9);
  });

  it("computes a unit deterministically: replicas agree exactly, whoever runs them", () => {
    const p = kmeans.params.parse({ seed: 99, k: 5, points: 10_000, dims: 3 });
    const units = rounds.splitRound(p, rounds.init(p), 4);
    expect(units.map((u) => [u.input.start, u.input.end])).toEqual([[0, 2500], [2500, 5000], [5000, 7500], [7500, 10_000]]);
    for (const u of units) {
      const a = kmeans.run(p, u.input);
      const b = kmeans.run(kmeans.params.parse(JSON.parse(JSON.stringify(p))), JSON.parse(JSON.stringify(u.input)));
      const c = runTask({ kernel: "kmeans", params: p, input: u.input }).output as KmeansOutput;
      expect(outputDigest(b)).toBe(outputDigest(a));
      expect(outputDigest(c)).toBe(outputDigest(a));
      // What the server checks before an output counts, and what survives the JSON wire.
      expect(kmeans.output.parse(JSON.parse(JSON.stringify(a)))).toEqual(a);
      expect(a.counts.reduce((s, n) => s + n, 0)).toBe(2500);
    }
  });

  it("steps deterministically: Lloyd's update, the largest shift as the metric, inertia", () => {
    const p = kmeans.params.parse({ seed: 3, k: 3, points: 6000, maxRounds: 5 });
    const state = rounds.init(p);
    const outputs = rounds.splitRound(p, state, 6).map((u) => kmeans.run(p, u.input));
    const a = rounds.step(p, state, outputs, 1);
    expect(rounds.step(p, JSON.parse(JSON.stringify(state)), JSON.parse(JSON.stringify(outputs)), 1)).toEqual(a);
    // The same update from all the points at once.
    const whole = kmeans.run(p, { start: 0, end: p.points, centroids: state.centroids });
    expect(whole.counts).toEqual(a.state.sizes);
    const shifts = whole.sums.map((s, c) => Math.hypot(...s.map((v, d) => v / whole.counts[c] - state.centroids[c][d])));
    a.state.centroids.forEach((c: number[], i: number) => c.forEach((v, d) => expect(v).toBeCloseTo(whole.sums[i][d] / whole.counts[i], 9)));
    expect(a.metric).toBeCloseTo(Math.max(...shifts), 9);
    expect(a.stats!.inertia).toBeCloseTo(whole.sse, 6);
    expect(a.done).toBe(false);
    // The round limit ends it; so does a shift within epsilon.
    expect(rounds.step(p, state, outputs, 5).done).toBe(true);
    expect(rounds.step({ ...p, epsilon: 100 }, state, outputs, 1).done).toBe(true);
  });

  it("refuses outputs that do not add up and inputs it cannot run", () => {
    const p = kmeans.params.parse({ seed: 3, k: 3, points: 6000 });
    const state = rounds.init(p);
    const outputs = rounds.splitRound(p, state, 3).map((u) => kmeans.run(p, u.input));
    expect(() => rounds.step(p, state, outputs.slice(1), 1)).toThrow(/cover 4000 points, the job has 6000/);
    expect(() => rounds.step(p, state, [{ ...outputs[0], counts: [1, 2] }, ...outputs.slice(1)], 1)).toThrow(/3 clusters/);
    expect(() => kmeans.run(p, { start: 0, end: 6001, centroids: state.centroids })).toThrow(/bad point range/);
    expect(() => kmeans.run(p, { start: 0, end: 10, centroids: state.centroids.slice(1) })).toThrow(/3 centroids/);
    expect(() => kmeans.run(p, { start: 0, end: 10, centroids: [[0, 0], [1, 1], [NaN, 2]] })).toThrow(/finite/);
    expect(kmeans.output.safeParse({ sums: [[1], [2]], counts: [1], sse: 0 }).success).toBe(false);
  });

  it("recovers the generating centres by running the rounds, and converges before the round limit", () => {
    for (const [raw, chunks] of [
      [{ seed: 1, k: 4, spread: 1 }, 8],
      [{ seed: 2, k: 8, spread: 3, points: 50_000 }, 10],
      [{ seed: 5, k: 12, spread: 2, points: 60_000 }, 7],
      [{ seed: 4, k: 3, dims: 4, spread: 2, points: 30_000 }, 5],
    ] as const) {
      const { p, history, result } = runRounds(raw, chunks);
      expect(result.converged).toBe(true);
      expect(result.rounds).toBe(history.length);
      expect(result.rounds).toBeLessThan(p.maxRounds);
      expect(history.at(-1)!.metric).toBeLessThanOrEqual(p.epsilon);
      expect(result.metrics).toEqual(history.map((h) => h.metric));
      // Inertia never goes up from round to round (Lloyd's algorithm).
      for (let i = 1; i < history.length; i++) expect(history[i].stats!.inertia).toBeLessThanOrEqual(history[i - 1].stats!.inertia * (1 + 1e-12));
      const errors = matchCentres(kmeansTrueCentres(p), result.centroids);
      expect(Math.max(...errors), JSON.stringify(raw)).toBeLessThan(0.1 * p.spread);
      expect(result.sizes.reduce((s, n) => s + n, 0)).toBe(p.points);
    }
  });

  it("gives the same centroids however the rounds are split into units", () => {
    const a = runRounds({ seed: 11, k: 5, spread: 2 }, 3).result;
    const b = runRounds({ seed: 11, k: 5, spread: 2 }, 17).result;
    expect(b.rounds).toBe(a.rounds);
    b.centroids.forEach((c, i) => c.forEach((v, d) => expect(v).toBeCloseTo(a.centroids[i][d], 9)));
    // The initial centroids come from the data alone, one per cluster.
    const p = kmeans.params.parse({ seed: 11, k: 5, spread: 2 });
    expect(Math.max(...matchCentres(kmeansTrueCentres(p), kmeansInit(p).centroids))).toBeLessThan(6 * p.spread);
  });

  it("stops at the round limit when it has not converged", () => {
    const { result } = runRounds({ seed: 2, k: 8, spread: 3, points: 50_000, maxRounds: 2 }, 4);
    expect(result).toMatchObject({ rounds: 2, converged: false });
  });
});
