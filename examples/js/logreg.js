// logreg: logistic regression trained by data-parallel gradient descent, one round a step.
//   node examples/js/make-classification.mjs --rows 100000 --features 20 --seed 1 > data.csv
//   npx tabgrid submit --program examples/js/logreg.js --input-csv data.csv --chunks 10 \
//     --merge trimmed-mean --replicas 1 --rounds 50 --params '{"lr":0.5}' --wait --json
//
// The CSV is cut into shards once; volunteers keep their shards between rounds. Each round,
// every unit gets the current weights (ctx.broadcast.w) and returns its shard's mean gradient
// with its mean loss and accuracy; the server merges those arrays coordinate-wise (a
// trimmed mean drops the most extreme shards, so one volunteer sending garbage cannot steer
// the weights), and step() takes one gradient step. Parameters (--params):
//   lr     learning rate (default 0.5)          l2   L2 penalty on the weights (default 0)
//   label  the label column's name (default: the last column), values 0 or 1
//   tol    stop when the loss falls by less than this in a round (default 0: run every round)

/** The shard as numbers: the bytes of a row-major Float64Array. */
function matrix(input) {
  if (input.byteOffset % 8 === 0) return new Float64Array(input.buffer, input.byteOffset, input.byteLength / 8);
  return new Float64Array(input.slice().buffer);
}

function labelIndex(ctx) {
  const name = ctx.params.label;
  if (name === undefined) return ctx.columns.length - 1;
  const i = ctx.columns.indexOf(name);
  if (i < 0) throw new Error(`no column named ${name}; the columns are ${ctx.columns.join(", ")}`);
  return i;
}

/** The mean gradient of the log loss over this shard, then its mean loss and accuracy. */
export function run(input, ctx) {
  const cols = ctx.columns.length;
  const x = matrix(input);
  const rows = x.length / cols;
  const label = labelIndex(ctx);
  const w = ctx.broadcast.w; // one weight per feature (the columns but the label), then the bias
  const d = w.length - 1;
  const grad = new Float64Array(d + 1);
  let loss = 0;
  let correct = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let z = w[d];
    for (let c = 0, j = 0; c < cols; c++) if (c !== label) z += w[j++] * x[o + c];
    const y = x[o + label];
    const p = 1 / (1 + Math.exp(-z));
    const g = p - y;
    for (let c = 0, j = 0; c < cols; c++) if (c !== label) grad[j++] += g * x[o + c];
    grad[d] += g;
    // log(1 + e^z) - y z, computed without overflow.
    loss += (z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z))) - y * z;
    if ((p >= 0.5 ? 1 : 0) === y) correct++;
  }
  const out = new Array(d + 3);
  for (let j = 0; j <= d; j++) out[j] = grad[j] / rows;
  out[d + 1] = loss / rows;
  out[d + 2] = correct / rows;
  return out;
}

/** Coordinate-wise mean, for a job whose outputs arrive unmerged (--merge concat). */
function mean(outputs) {
  return outputs[0].map((_, j) => outputs.reduce((s, o) => s + o[j], 0) / outputs.length);
}

export function step(merged, state, ctx) {
  const p = ctx.params;
  if (ctx.round === 0) {
    // The features' weights and the bias, ±1e-6 rather than 0: round 1 then computes with
    // fractions as every later round does, so V8 keeps the code it optimised in round 1 (from
    // all-zero weights it speculated on integers and threw that code away in round 2).
    const w = ctx.columns.map((_, i) => (i % 2 ? 1e-6 : -1e-6));
    return { next: { w }, state: { w, loss: null } };
  }
  const m = Array.isArray(merged[0]) ? mean(merged) : merged;
  const d = state.w.length;
  const lr = p.lr ?? 0.5;
  const l2 = p.l2 ?? 0;
  const w = state.w.map((wi, i) => wi - lr * (m[i] + (i < d - 1 ? l2 * wi : 0)));
  // The loss and accuracy the round measured, at the weights it was sent.
  const metrics = { loss: m[d], accuracy: m[d + 1] };
  if (p.tol && state.loss !== null && state.loss - m[d] < p.tol) {
    return { done: true, result: { w: state.w, loss: m[d], accuracy: m[d + 1], rounds: ctx.round }, metrics };
  }
  return { next: { w }, state: { w, loss: m[d] }, metrics };
}
