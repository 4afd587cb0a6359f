import { z } from "zod";
import type { Kernel, RoundRecord } from "./types";
import { fmix32 } from "./hash";

// k-means clustering as an iterative job. The data set is generated from the seed (k true
// centres on a jittered grid, plus noise), so a unit carries only a range of point indices
// and the current centroids; it assigns its points to the nearest centroid and returns the
// per-cluster coordinate sums and counts. The coordinator's step turns the sums of every
// unit into the next centroids (Lloyd's algorithm) until they stop moving.
//
// Replicas are compared exactly, so everything a unit computes is reproducible bit for bit
// on any JavaScript engine: only +, −, × and / on doubles (IEEE 754, correctly rounded), in
// a fixed order, and integer hashing; no Math.log, Math.cos or Math.pow, whose last bits
// differ between engines.

/** Reference CPU-ms per point per round (hashing the point's noise + distances); measured on Node 20. */
export const KMEANS_MS_PER_POINT = 2e-4;
/** Reference CPU-ms of fixed cost per unit (message passing, generating the true centres). */
export const KMEANS_MS_PER_UNIT = 0.5;
/** Side of a grid cell holding one true centre; centres are jittered by at most ±JITTER. */
export const KMEANS_CELL = 20;
const JITTER = 3;
/** Points of the deterministic sample the initial centroids are picked from. */
const INIT_SAMPLE = 2000;
const TWO_POW_32 = 4294967296;

export const kmeansParams = z.object({
  /** Points in the generated data set. */
  points: z.number().int().min(100).max(1_000_000).default(20_000).describe("Points in the generated data set"),
  /** Clusters to find (and true centres generated). */
  k: z.number().int().min(2).max(20).default(4).describe("Clusters"),
  dims: z.number().int().min(1).max(8).default(2).describe("Dimensions of a point"),
  /** Random seed of the data set; the job service fills one at submit. */
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  /**
   * Standard deviation of the noise around a true centre, per coordinate. True centres are
   * at least KMEANS_CELL − 2·JITTER = 14 apart: at 1 the clusters are well separated, from
   * about 3 on they start to overlap.
   */
  spread: z.number().positive().max(5).default(1).describe("Noise around each true centre (standard deviation)"),
  maxRounds: z.number().int().min(1).max(100).default(20).describe("Most rounds before stopping"),
  /** Converged once no centroid moves more than this in a round. */
  epsilon: z.number().min(0).max(100).default(1e-4).describe("Converged when no centroid moves more than this"),
})
  // A parameter it does not know is refused by name, not ignored (a typo would go unnoticed).
  .strict();
export type KmeansParams = z.infer<typeof kmeansParams>;

export interface KmeansState {
  centroids: number[][];
  /** Points per centroid in the round that produced them (units ignore it). */
  sizes?: number[];
}

export interface KmeansInput {
  /** Point indices [start, end). */
  start: number;
  end: number;
  centroids: number[][];
}

const finite = z.number().refine(Number.isFinite, "must be finite");
export const kmeansOutput = z
  .object({
    /** Per cluster, the sum of its points' coordinates. */
    sums: z.array(z.array(finite).max(8)).min(2).max(20),
    /** Per cluster, its points. */
    counts: z.array(z.number().int().min(0).max(1_000_000)).min(2).max(20),
    /** Sum of squared distances of the points to their centroid. */
    sse: finite.min(0),
  })
  .strict()
  .refine((o) => o.sums.length === o.counts.length, { message: "sums and counts differ in length" });
export type KmeansOutput = z.infer<typeof kmeansOutput>;

export interface KmeansResult {
  centroids: number[][];
  /** Points per centroid in the last round. */
  sizes: number[];
  rounds: number;
  converged: boolean;
  /** The largest centroid shift of each round. */
  metrics: Array<number | null>;
  /** Sum of squared distances to the nearest centroid, in the last round. */
  inertia: number | null;
}

/** A counter-based stream of 32-bit words, one stream per (seed, stream) pair. */
class Stream {
  private s: number;
  constructor(seed: number, stream: number) {
    const lo = seed % TWO_POW_32 >>> 0;
    const hi = Math.floor(seed / TWO_POW_32) >>> 0;
    this.s = fmix32(fmix32(stream ^ 0x243f6a88) ^ lo) ^ fmix32(hi ^ 0x13198a2e);
  }
  next(): number {
    this.s = (this.s + 0x9e3779b9) | 0;
    return fmix32(this.s);
  }
  /** Uniform in [0, 1), a multiple of 2^-32. */
  uniform(): number {
    return this.next() / TWO_POW_32;
  }
  /**
   * Approximately standard normal: the sum of 6 uniforms is exact (multiples of 2^-32 below
   * 6), centred and scaled to variance 1. Bounded by ±3·√2, which keeps clusters apart.
   */
  normal(): number {
    let s = 0;
    for (let i = 0; i < 6; i++) s += this.next();
    return (s / TWO_POW_32 - 3) * Math.SQRT2;
  }
}

/** Streams below this are the data's points; the ones above drive the true centres. */
const CENTRES_STREAM = 0xfffffff0;

/**
 * The k true centres the data is generated around: distinct cells of a grid with at least
 * k cells, each centre jittered inside its cell.
 */
export function kmeansTrueCentres(p: Pick<KmeansParams, "k" | "dims" | "seed">): number[][] {
  let side = 1;
  let cells = 1;
  while (cells < p.k) {
    side++;
    cells = 1;
    for (let d = 0; d < p.dims; d++) cells *= side;
  }
  const rng = new Stream(p.seed ?? 0, CENTRES_STREAM);
  const order = Array.from({ length: cells }, (_, i) => i);
  const centres: number[][] = [];
  for (let c = 0; c < p.k; c++) {
    // A partial Fisher–Yates shuffle picks k distinct cells.
    const j = c + Math.floor((rng.next() * (cells - c)) / TWO_POW_32);
    [order[c], order[j]] = [order[j], order[c]];
    let cell = order[c];
    const centre: number[] = [];
    for (let d = 0; d < p.dims; d++) {
      centre.push((cell % side) * KMEANS_CELL + (rng.uniform() * 2 - 1) * JITTER);
      cell = Math.floor(cell / side);
    }
    centres.push(centre);
  }
  return centres;
}

/** Point `i` of the data set, written into `out` (length dims); returns its true cluster. */
function point(p: KmeansParams, centres: number[][], i: number, out: number[]): number {
  const rng = new Stream(p.seed ?? 0, i);
  const cluster = Math.floor((rng.next() * p.k) / TWO_POW_32);
  const centre = centres[cluster];
  for (let d = 0; d < p.dims; d++) out[d] = centre[d] + p.spread * rng.normal();
  return cluster;
}

/** The data set's points [start, end), for tests and for the initial centroids. */
export function kmeansPoints(p: KmeansParams, start: number, end: number): { points: number[][]; clusters: number[] } {
  const centres = kmeansTrueCentres(p);
  const points: number[][] = [];
  const clusters: number[] = [];
  for (let i = start; i < end; i++) {
    const x = new Array<number>(p.dims);
    clusters.push(point(p, centres, i, x));
    points.push(x);
  }
  return { points, clusters };
}

function dist2(a: ArrayLike<number>, b: ArrayLike<number>, dims: number): number {
  let s = 0;
  for (let d = 0; d < dims; d++) {
    const t = a[d] - b[d];
    s += t * t;
  }
  return s;
}

/**
 * Initial centroids by farthest-first traversal of a fixed sample (the first points):
 * start from the sample point nearest the sample's mean, then repeatedly take the point
 * farthest from the centroids so far. Deterministic, and with separated clusters it puts
 * one centroid in each.
 */
export function kmeansInit(p: KmeansParams): KmeansState {
  const { points } = kmeansPoints(p, 0, Math.min(p.points, INIT_SAMPLE));
  const mean = new Array<number>(p.dims).fill(0);
  for (const x of points) for (let d = 0; d < p.dims; d++) mean[d] += x[d] / points.length;
  const nearest = points.map((x) => dist2(x, mean, p.dims));
  let first = 0;
  for (let i = 1; i < points.length; i++) if (nearest[i] < nearest[first]) first = i;
  const centroids = [points[first].slice()];
  for (let i = 0; i < points.length; i++) nearest[i] = dist2(points[i], centroids[0], p.dims);
  while (centroids.length < p.k) {
    let far = 0;
    for (let i = 1; i < points.length; i++) if (nearest[i] > nearest[far]) far = i;
    const c = points[far].slice();
    centroids.push(c);
    for (let i = 0; i < points.length; i++) nearest[i] = Math.min(nearest[i], dist2(points[i], c, p.dims));
  }
  return { centroids };
}

function checkCentroids(p: KmeansParams, centroids: unknown): asserts centroids is number[][] {
  if (
    !Array.isArray(centroids) ||
    centroids.length !== p.k ||
    !centroids.every((c) => Array.isArray(c) && c.length === p.dims && c.every((v) => typeof v === "number" && Number.isFinite(v)))
  ) {
    throw new Error(`kmeans: expected ${p.k} centroids of ${p.dims} finite coordinates`);
  }
}

function maxChunks(p: KmeansParams) {
  return Math.max(1, Math.min(1000, Math.floor(p.points / 100)));
}

function splitRound(p: KmeansParams, state: KmeansState, chunks: number): Array<{ input: KmeansInput; work: number }> {
  const n = Math.max(1, Math.min(Math.floor(chunks), maxChunks(p)));
  const base = Math.floor(p.points / n);
  const extra = p.points - base * n;
  let start = 0;
  return Array.from({ length: n }, (_, i) => {
    const size = base + (i < extra ? 1 : 0);
    const input = { start, end: start + size, centroids: state.centroids };
    start += size;
    return { input, work: KMEANS_MS_PER_UNIT + size * KMEANS_MS_PER_POINT * (1 + (p.k * p.dims) / 24) };
  });
}

function run(p: KmeansParams, input: KmeansInput): KmeansOutput {
  const { start, end, centroids } = input ?? ({} as KmeansInput);
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start < end && end <= p.points)) {
    throw new Error(`kmeans: bad point range ${JSON.stringify([start, end])}`);
  }
  checkCentroids(p, centroids);
  const centres = kmeansTrueCentres(p);
  const sums = centroids.map(() => new Array<number>(p.dims).fill(0));
  const counts = new Array<number>(p.k).fill(0);
  let sse = 0;
  const x = new Array<number>(p.dims);
  for (let i = start; i < end; i++) {
    point(p, centres, i, x);
    let best = 0;
    let bestD = dist2(x, centroids[0], p.dims);
    for (let c = 1; c < p.k; c++) {
      const dd = dist2(x, centroids[c], p.dims);
      if (dd < bestD) {
        best = c;
        bestD = dd;
      }
    }
    const s = sums[best];
    for (let d = 0; d < p.dims; d++) s[d] += x[d];
    counts[best]++;
    sse += bestD;
  }
  return { sums, counts, sse };
}

/** Lloyd's update from every unit's sums, in unit order: the next centroids and how far they moved. */
function step(p: KmeansParams, state: KmeansState, outputs: KmeansOutput[], round: number) {
  checkCentroids(p, state.centroids);
  const sums = state.centroids.map(() => new Array<number>(p.dims).fill(0));
  const counts = new Array<number>(p.k).fill(0);
  let sse = 0;
  for (const o of outputs) {
    if (o.sums.length !== p.k || o.counts.length !== p.k || o.sums.some((s) => s.length !== p.dims)) {
      throw new Error(`kmeans: a unit output does not have ${p.k} clusters of ${p.dims} coordinates`);
    }
    for (let c = 0; c < p.k; c++) {
      counts[c] += o.counts[c];
      for (let d = 0; d < p.dims; d++) sums[c][d] += o.sums[c][d];
    }
    sse += o.sse;
  }
  const total = counts.reduce((a, b) => a + b, 0);
  if (total !== p.points) throw new Error(`kmeans: unit outputs cover ${total} points, the job has ${p.points}`);
  let shift = 0;
  // A centroid that lost all its points stays where it was.
  const centroids = state.centroids.map((old, c) => (counts[c] ? sums[c].map((s) => s / counts[c]) : old.slice()));
  for (let c = 0; c < p.k; c++) shift = Math.max(shift, Math.sqrt(dist2(centroids[c], state.centroids[c], p.dims)));
  return {
    state: { centroids, sizes: counts },
    metric: shift,
    done: shift <= p.epsilon || round >= p.maxRounds,
    stats: { inertia: sse, empty: counts.filter((n) => n === 0).length },
  };
}

function finish(p: KmeansParams, state: KmeansState, history: RoundRecord[]): KmeansResult {
  const last = history[history.length - 1];
  return {
    centroids: state.centroids,
    sizes: state.sizes ?? [],
    rounds: history.length,
    converged: last?.metric != null && last.metric <= p.epsilon,
    metrics: history.map((h) => h.metric),
    inertia: last?.stats?.inertia ?? null,
  };
}

export const kmeans: Kernel<KmeansParams, KmeansInput, KmeansOutput, KmeansResult> = {
  name: "kmeans",
  title: "k-means clustering",
  description:
    "Clusters a generated data set (k noisy clusters) with Lloyd's algorithm: each round, volunteers assign their slice of the points to the nearest centroid; the server moves the centroids and starts the next round until they stop moving.",
  params: kmeansParams,
  output: kmeansOutput,
  maxChunks,
  split: (p, chunks) => splitRound(p, kmeansInit(p), chunks),
  run,
  /** One round from the initial centroids (an iterative job runs `rounds` instead). */
  reduce(p, outputs) {
    const s = step(p, kmeansInit(p), outputs, 1);
    return finish(p, s.state, [{ round: 1, metric: s.metric, latencyMs: null, stats: s.stats }]);
  },
  rounds: {
    maxRounds: (p) => p.maxRounds,
    init: kmeansInit,
    splitRound,
    step,
    finish,
  },
};
