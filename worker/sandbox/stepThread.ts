// The long-lived thread of stepSandbox.ts: runs iterative programs' steps in QuickJS one
// after another, keeping the QuickJS module between them. Each step still gets a fresh
// runtime and context (nothing of one job's step is visible to the next), its memory limit
// and its time limit (QuickJS's interrupt; the parent terminates the thread if that fails).
import { parentPort } from "node:worker_threads";
import { stepInQuickJS } from "./quickjs";
import type { StepRequest } from "./stepSandbox";

const port = parentPort!;
port.on("message", (m: { id: number; req: StepRequest }) => {
  const t0 = performance.now();
  stepInQuickJS({ ...m.req, reuseModule: true }).then(
    (json) => port.postMessage({ id: m.id, type: "done", value: JSON.parse(json) as unknown, ms: performance.now() - t0 }),
    (e: unknown) => port.postMessage({ id: m.id, type: "fail", message: e instanceof Error ? e.message : String(e) }),
  );
});
port.postMessage({ type: "started" });
