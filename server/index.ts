import v8 from "node:v8";
import { parseEnv } from "./env";
import { startServer } from "./app";

// `npm start` runs this after migrating and building: one process serves everything.
const env = parseEnv();
// V8 lets the old generation grow to about twice what survived the last full collection
// (more while allocation is fast) before it collects again. Under load most of what is
// promoted dies soon after (results on their way to a commit, frames), so the heap ran at
// 2–2.5 times its live data (docs/performance.md, "Memory under load"). A smaller step
// collects more often, concurrently for the most part.
if (env.HEAP_GROWTH_PERCENT > 0) v8.setFlagsFromString(`--heap-growing-percent=${env.HEAP_GROWTH_PERCENT}`);
const server = await startServer(env, { ui: env.TABGRID_UI === "on" });

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, async () => {
    if (stopping) process.exit(1);
    stopping = true;
    console.log(`${signal}: committing pending results and stopping…`);
    await server.close();
    process.exit(0);
  });
}
