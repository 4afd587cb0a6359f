import { parseEnv } from "./env";
import { startServer } from "./app";

// `npm start` runs this after migrating and building: one process serves everything.
const env = parseEnv();
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
