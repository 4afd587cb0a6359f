// wordcount: counts the words of a text file, a chunk of lines per unit, then merges the
// counts with `reduce`. Submit it with a text file split by lines:
//   npx tabgrid submit --program examples/js/wordcount.js --lines examples/js/sample.txt \
//     --chunks 4 --merge reduce --wait --json
// A program is one self-contained ES module (no imports). `run` gets one unit's input and
// `ctx` ({ params, progress }); it must be deterministic, since replicas are compared.

export function run(input, ctx) {
  const counts = {};
  const lines = input.split("\n");
  lines.forEach((line, i) => {
    for (const word of line.toLowerCase().match(/[a-z]+(?:'[a-z]+)?/g) ?? []) counts[word] = (counts[word] ?? 0) + 1;
    if (i % 1000 === 0) ctx.progress(i / lines.length);
  });
  return counts;
}

// Runs on the server, sandboxed, over the units' outputs in unit order.
export function reduce(outputs, ctx) {
  const total = {};
  for (const counts of outputs) for (const [word, n] of Object.entries(counts)) total[word] = (total[word] ?? 0) + n;
  const top = Number(ctx.params.top ?? 20);
  return Object.entries(total)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, top)
    .map(([word, count]) => ({ word, count }));
}
