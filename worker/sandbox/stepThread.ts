// The long-lived thread of stepSandbox.ts: runs iterative programs' steps one after another,
// JS ones in QuickJS (keeping the QuickJS module between them), WASM ones as WebAssembly. Each step still gets a fresh
// runtime and context (nothing of one job's step is visible to the next), its memory limit
// and its time limit (QuickJS's interrupt; the parent terminates the thread if that fails).
import { parentPort } from "node:worker_threads";
import { stepInQuickJS } from "./quickjs";
import { stepWasm } from "./runProgram";
import type { StepRequest } from "./stepSandbox";

const port = parentPort!;
port.on("message", (m: { id: number; req: StepRequest }) => {
  const t0 = performance.now();
  const req = m.req;
  // A WASM step (WebAssembly without imports) answers bytes; a JS step (QuickJS), JSON text.
  const answer: Promise<unknown> = req.kind === "wasm"
    ? stepWasm({ hash: req.hash, code: req.code, input: req.input, memoryLimitBytes: req.memoryMb * 1024 * 1024 })
    : stepInQuickJS({ ...req, reuseModule: true }).then((json) => JSON.parse(json) as unknown);
  answer.then(
    (value) => port.postMessage({ id: m.id, type: "done", value, ms: performance.now() - t0 }),
    (e: unknown) => port.postMessage({ id: m.id, type: "fail", message: e instanceof Error ? e.message : String(e) }),
  );
});
port.postMessage({ type: "started" });
