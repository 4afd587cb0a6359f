import { sleep, summarize } from "./stats";

/**
 * `n` calls at `perSecond`, open model: call i is due at start + i/perSecond whatever the
 * earlier ones take, and its latency counts from when it was due (no coordinated omission).
 */
export async function openModel(perSecond: number, n: number, call: (i: number) => Promise<unknown>) {
  const start = performance.now();
  const latencies: number[] = [];
  let failed = 0;
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    const at = start + (i * 1000) / perSecond;
    await sleep(Math.max(0, at - performance.now()));
    try {
      await call(i);
      latencies.push(performance.now() - at);
    } catch {
      failed++;
    }
  }));
  return { requests: n, perSecond, failed, summary: summarize(latencies) };
}
