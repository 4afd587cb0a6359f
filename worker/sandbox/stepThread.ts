// The long-lived thread of stepSandbox.ts: runs iterative programs' steps one after another,
// JS ones in QuickJS (keeping the QuickJS module between them), WASM ones as WebAssembly; or,
// as the audit thread, recomputes units of those programs the same way. A job's JS steps, one
// round after another, share a runtime and context with its program evaluated once (until
// another job's step or a failure ends them); nothing of one job is visible to another's. Each
// request has its memory limit and its time limit (QuickJS's interrupt; the parent terminates
// the thread if that fails).
import os from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { parseAnswer, runInQuickJS, stepInQuickJS, warmQuickJs } from "./quickjs";
import { MiB } from "./abi";
import { runProgram, stepWasm } from "./runProgram";
import type { KeptRequest, UnitRequest } from "./stepSandbox";

const { nice = 0, memoryMb } = (workerData ?? {}) as { nice?: number; memoryMb?: number };
if (nice) {
  try {
    // On Linux this lowers this thread alone; elsewhere (or if refused) it runs at normal priority.
    os.setPriority(0, nice);
  } catch {
    // Not fatal: the work is the same, only less polite.
  }
}

function runUnit(req: UnitRequest): Promise<unknown> {
  if (req.kind === "wasm") {
    return runProgram({
      kind: "wasm", hash: req.hash, code: req.code, input: req.input, inputKind: req.inputKind, params: req.params,
      context: req.context, memoryLimitBytes: req.memoryMb * 1024 * 1024,
    }).then((r) => r.output);
  }
  // A unit's output reached the server in a frame of at most 4 MiB: an audit's larger answer cannot agree.
  return runInQuickJS({ ...req, script: req.code as string, reuseModule: true }).then((json) => parseAnswer(json, "the audited unit", 8 * MiB));
}

const port = parentPort!;
port.on("message", (m: { id: number; req: KeptRequest }) => {
  const t0 = performance.now();
  const req = m.req;
  // A WASM step (WebAssembly without imports) answers bytes; a JS step (QuickJS), JSON text.
  let answer: Promise<unknown>;
  if ("op" in req) answer = runUnit(req);
  else if (req.kind === "wasm") answer = stepWasm({ hash: req.hash, code: req.code, input: req.input, memoryLimitBytes: req.memoryMb * 1024 * 1024 });
  // A job's steps, round after round, in one evaluation of its program (req.keep).
  else answer = stepInQuickJS({ ...req, reuseModule: true }).then((json) => parseAnswer(json, "step"));
  const fail = (e: unknown) => port.postMessage({ id: m.id, type: "fail", message: e instanceof Error ? e.message : String(e) });
  answer.then((value) => {
    try {
      port.postMessage({ id: m.id, type: "done", value, ms: performance.now() - t0 });
    } catch (e) {
      // What cannot be cloned (a WASM step's odd answer) fails its request, not the thread.
      fail(e);
    }
  }, fail);
});
port.postMessage({ type: "started" });
// QuickJS made now, not at the first request: a thread is started ahead of it (at a program's upload).
if (memoryMb) warmQuickJs(memoryMb).catch(() => undefined);
