// Where a worker thread's entry module is, and how to start it. Run from TypeScript sources
// (tsx, vitest) a thread goes through thread-loader.mjs, which registers tsx inside the
// thread first; run from compiled JavaScript it starts the entry directly.

const loaderUrl = new URL("./thread-loader.mjs", import.meta.url);

export interface ThreadTarget {
  url: URL;
  /** Merge into the Worker's workerData (the loader reads `entry`). */
  workerData: { entry?: string };
}

export function threadTarget(entry: URL): ThreadTarget {
  if (!entry.pathname.endsWith(".ts")) return { url: entry, workerData: {} };
  return { url: loaderUrl, workerData: { entry: entry.href } };
}
