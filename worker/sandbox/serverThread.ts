// One-shot worker thread of the server's sandbox (reduceOnServer.ts): runs a JS program's
// reduce or reads its comparator in QuickJS, or runs a WASM program's reduce, then exits.
// A thread of its own, so that a runaway program costs the coordinator neither its event
// loop nor its memory: the parent terminates it at the time limit, V8 at the heap limit.
import { parentPort, workerData } from "node:worker_threads";
import { comparatorInQuickJS, parseAnswer, reduceInQuickJS, stepInQuickJS } from "./quickjs";
import { reduceProgram, stepWasm } from "./runProgram";
import type { ServerSandboxRequest } from "./reduceOnServer";
import { mergeValues } from "../../server/services/jobs/mergeValues";

const req = (workerData as { request: ServerSandboxRequest }).request;
const port = parentPort!;

async function main(): Promise<unknown> {
  if (req.op === "merge") return mergeValues(req.how, req.texts);
  if (req.op === "comparator") return parseAnswer(await comparatorInQuickJS({ script: req.script, timeMs: req.timeMs, memoryMb: req.memoryMb }), "the comparator", 64 * 1024);
  if (req.op === "step") {
    if (req.kind === "wasm") return stepWasm({ hash: req.hash, code: req.code, input: req.input, memoryLimitBytes: req.memoryMb * 1024 * 1024 });
    return parseAnswer(await stepInQuickJS(req), "step");
  }
  if (req.kind === "js") {
    if (typeof req.code !== "string") throw new Error("a JS program's code must be its compiled script");
    return parseAnswer(await reduceInQuickJS({ script: req.code, outputsJson: req.outputsJson, params: req.params, timeMs: req.timeMs, memoryMb: req.memoryMb }), "reduce");
  }
  const { result } = await reduceProgram({
    kind: "wasm", hash: "server-reduce", code: req.code, outputs: JSON.parse(req.outputsJson) as unknown[], params: req.params, memoryLimitBytes: req.memoryMb * 1024 * 1024,
  });
  return result;
}

port.postMessage({ type: "started" });
const t0 = performance.now();
const fail = (e: unknown) => port.postMessage({ type: "fail", message: e instanceof Error ? e.message : String(e) });
main().then((value) => {
  try {
    port.postMessage({ type: "done", value, ms: performance.now() - t0 });
  } catch (e) {
    fail(e);
  }
}, fail);
