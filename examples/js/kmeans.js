// kmeans: k-means clustering (Lloyd's algorithm) of a CSV of points, one round a step: the
// built-in kmeans kernel's algorithm, written as a program of one's own.
//   npx tabgrid submit --program examples/js/kmeans.js --input-csv points.csv --chunks 8 \
//     --rounds 30 --params '{"k":4}' --wait --json
//
// Every column of the CSV is a coordinate. The shards stay on the volunteers between rounds.
// Round 1 samples: each unit returns its shard's first points, and step picks k of them far
// apart (the first, then each time the point farthest from those picked). From round 2 on,
// every unit gets the centroids (ctx.broadcast.centroids) and returns, per cluster, the sum of
// its points and their count, and step moves each centroid to its points' mean. It stops
// when no centroid moves more than `epsilon`. Outputs are merged by concatenation (the
// default merge), so step sees each shard's sums. Only +, −, × and / on doubles, in a fixed
// order: every engine computes the same bits, and replicas can be compared exactly.
// Parameters (--params):
//   k        clusters (default 4)              epsilon  convergence threshold (default 1e-6)
//   sample   points each shard offers in round 1 (default 64)

/** The shard as numbers: the bytes of a row-major Float64Array. */
function matrix(input) {
  if (input.byteOffset % 8 === 0) return new Float64Array(input.buffer, input.byteOffset, input.byteLength / 8);
  return new Float64Array(input.slice().buffer);
}

export function run(input, ctx) {
  const dims = ctx.columns.length;
  const x = matrix(input);
  const rows = x.length / dims;
  const centroids = ctx.broadcast.centroids;
  if (!centroids) {
    const n = Math.min(rows, ctx.params.sample ?? 64);
    const sample = [];
    for (let r = 0; r < n; r++) sample.push(Array.from(x.subarray(r * dims, r * dims + dims)));
    return { sample };
  }
  const k = centroids.length;
  const sums = centroids.map(() => new Array(dims).fill(0));
  const counts = new Array(k).fill(0);
  let sse = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * dims;
    let best = 0;
    let bestD = Infinity;
    for (let c = 0; c < k; c++) {
      let d = 0;
      for (let j = 0; j < dims; j++) {
        const t = x[o + j] - centroids[c][j];
        d += t * t;
      }
      if (d < bestD) {
        bestD = d;
        best = c;
      }
    }
    for (let j = 0; j < dims; j++) sums[best][j] += x[o + j];
    counts[best]++;
    sse += bestD;
  }
  return { sums, counts, sse };
}

function distance2(a, b) {
  let d = 0;
  for (let j = 0; j < a.length; j++) d += (a[j] - b[j]) * (a[j] - b[j]);
  return d;
}

/** k points of the sample, far apart: the first, then each time the one farthest from those picked. */
function spreadOut(points, k) {
  const picked = [points[0]];
  while (picked.length < k) {
    let far = points[0];
    let farD = -1;
    for (const p of points) {
      let near = Infinity;
      for (const c of picked) near = Math.min(near, distance2(p, c));
      if (near > farD) {
        farD = near;
        far = p;
      }
    }
    picked.push(far);
  }
  return picked;
}

export function step(merged, state, ctx) {
  const k = ctx.params.k ?? 4;
  const epsilon = ctx.params.epsilon ?? 1e-6;
  if (ctx.round === 0) return { next: { centroids: null }, state: { centroids: null } };
  if (!state.centroids) {
    const points = merged.flatMap((o) => o.sample);
    if (points.length < k) throw new Error(`only ${points.length} points to pick ${k} centroids from`);
    const centroids = spreadOut(points, k);
    return { next: { centroids }, state: { centroids } };
  }
  const dims = state.centroids[0].length;
  const sums = state.centroids.map(() => new Array(dims).fill(0));
  const counts = new Array(k).fill(0);
  let sse = 0;
  for (const o of merged) {
    for (let c = 0; c < k; c++) {
      counts[c] += o.counts[c];
      for (let j = 0; j < dims; j++) sums[c][j] += o.sums[c][j];
    }
    sse += o.sse;
  }
  // A centroid that lost all its points stays where it was.
  const centroids = state.centroids.map((old, c) => (counts[c] ? sums[c].map((s) => s / counts[c]) : old));
  let moved = 0;
  for (let c = 0; c < k; c++) moved = Math.max(moved, Math.sqrt(distance2(centroids[c], state.centroids[c])));
  const metrics = { sse, moved };
  if (moved <= epsilon) return { done: true, result: { centroids, sizes: counts, sse, rounds: ctx.round }, metrics };
  return { next: { centroids }, state: { centroids, sizes: counts }, metrics };
}
