// collatz: the longest Collatz chain below a bound, a range of starting numbers per unit.
//   npx tabgrid submit --program examples/js/collatz.js --range 1:1000000 --chunks 20 --merge reduce --wait
// Each unit gets { start, end }.

export function run({ start, end }) {
  let best = { start: start, steps: 0 };
  for (let n = start; n < end; n++) {
    let x = n;
    let steps = 0;
    while (x !== 1 && x > 0) {
      x = x % 2 === 0 ? x / 2 : 3 * x + 1;
      steps++;
    }
    if (steps > best.steps) best = { start: n, steps };
  }
  return best;
}

export function reduce(outputs) {
  return outputs.reduce((a, b) => (b.steps > a.steps ? b : a));
}
