// Starts a TypeScript thread entry. Node 20 does not apply loader hooks passed to a worker
// through execArgv (`--import tsx`) to the worker's own entry module, and hooks registered
// in the main thread (tsx CLI, tsx's register(), vitest) do not reach worker threads at all.
// Registering tsx from inside the thread and then importing the entry works everywhere.
import { workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
await import(workerData.entry);
