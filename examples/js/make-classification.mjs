// A seeded synthetic binary classification set, as CSV (f0,…,f{n-1},label), for logreg.js:
//   node examples/js/make-classification.mjs --rows 100000 --features 20 --seed 1 > data.csv
// Features are standard normal; the label is drawn with probability sigmoid(w·x + b) for
// fixed random w and b, so the best possible accuracy is below 100% and the loss has a floor.
// The same seed always gives the same file.

/** mulberry32: a small seeded generator, the same numbers on every platform. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function makeClassification({ rows = 1000, features = 20, seed = 1 } = {}) {
  const next = random(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  const w = Array.from({ length: features }, () => normal());
  const b = normal() * 0.5;
  const lines = [[...w.keys()].map((i) => `f${i}`).concat("label").join(",")];
  for (let r = 0; r < rows; r++) {
    const x = w.map(() => normal());
    const z = x.reduce((s, xi, i) => s + xi * w[i], b);
    const y = next() < 1 / (1 + Math.exp(-z)) ? 1 : 0;
    lines.push(x.map((v) => v.toFixed(6)).concat(String(y)).join(","));
  }
  return lines.join("\n") + "\n";
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name, d) => {
    const i = process.argv.indexOf(`--${name}`);
    const v = i < 0 ? d : Number(process.argv[i + 1]);
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive whole number`);
    return v;
  };
  process.stdout.write(makeClassification({ rows: arg("rows", 1000), features: arg("features", 20), seed: arg("seed", 1) }));
}
