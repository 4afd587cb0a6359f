// The runner: the code of each Web Worker inside the sandbox iframe (see hostPage.ts). It is
// bundled by esbuild into one classic script (server/http/sandbox.ts serves it at
// SANDBOX_RUNNER_PATH), handed to the iframe as text and started from a blob: URL.
//
// Messages (relayed verbatim by the iframe):
//   in:  { type: "run", id, req: ProgramRequest, inputKey?, cached? }
//   out: { type: "ready" } once, then per task { type: "progress", id, fraction } …
//        and { type: "done", id, output, ms } or { type: "fail", id, message },
//        or { type: "missing", id } for a `cached` input this worker no longer holds
// `inputKey`: the task's input is kept under it (worker/runtime/inputCache.ts); with `cached`,
// the input was left out because the sender's mirror says this worker holds it.
//
// A JS program runs in this worker's own realm (evaluated with importScripts of a blob: URL,
// which the CSP allows; eval and new Function are refused). It could therefore tamper with
// this runner, which is why a worker that ran a JS program never runs a different program
// (routingPool.ts, dedicatedProgramWorker). What it cannot do is leave the sandbox: no
// network (CSP connect-src 'none', script-src without any URL source), an opaque origin (no
// cookies or storage of the app), and no nested workers (removed below).

import { PROGRAM_GLOBAL, type ProgramRequest } from "./abi";
import { runProgram, throttleProgress, type JsHost } from "./runProgram";
import { cacheable, InputCache, inputSize, type CachedInput } from "../runtime/inputCache";

const scope = self as unknown as DedicatedWorkerGlobalScope & Record<string, unknown>;
/** Answers go back the way tasks come: through the iframe, or over the page's direct channel once it is here. */
let post: (m: unknown) => void = scope.postMessage.bind(scope);
const loadScript = scope.importScripts.bind(scope);

// Nested workers would let one task use more threads than the volunteer gave.
for (const name of ["Worker", "SharedWorker"]) {
  try {
    delete scope[name];
  } catch {
    // not configurable here: nothing to remove
  }
}

function describe(e: unknown): string {
  try {
    if (e && typeof e === "object" && typeof (e as Error).message === "string") {
      const { name, message, stack } = e as Error;
      const m = typeof stack === "string" ? /blob:[^\s)]*?:(\d+):(\d+)/.exec(stack) : null;
      const where = m ? ` (at line ${m[1]}, column ${m[2]} of the compiled program)` : "";
      return `${typeof name === "string" && name ? name : "Error"}: ${message}${where}`;
    }
    return `a non-Error value was thrown: ${String(e)}`;
  } catch {
    return "the program threw something that cannot be described";
  }
}

/**
 * The key of the evaluation loaded now, when it may serve the next call: an iterative job's
 * units (`keep`) run in one evaluation of the module, so its code stays compiled and warm
 * from one round to the next instead of being evaluated afresh for each unit.
 */
let loaded: string | undefined;

const jsHost: JsHost = {
  async call(req) {
    const key = req.keep === undefined ? undefined : `${req.keep}\n${req.hash}`;
    if (key === undefined || key !== loaded) {
      loaded = undefined;
      // As in Node's vm context: JS programs get no WebAssembly (this worker will never run a
      // WASM program again once it ran JS, see dedicatedProgramWorker).
      delete scope.WebAssembly;
      delete scope.SharedArrayBuffer;
      // The compiled script declares the global with `var`, which makes it non-configurable
      // after the first run (delete would throw in strict code): overwrite it instead.
      scope[PROGRAM_GLOBAL] = undefined;
      const url = URL.createObjectURL(new Blob([req.script], { type: "text/javascript" }));
      try {
        loadScript(url);
      } catch (e) {
        throw new Error(`the program failed while loading: ${describe(e)}`);
      } finally {
        URL.revokeObjectURL(url);
      }
      loaded = key;
    }
    const ns = scope[PROGRAM_GLOBAL] as Record<string, unknown> | undefined;
    const f = ns?.[req.fn];
    if (typeof f !== "function") throw new Error(req.fn === "run" ? "the program does not export a run function" : "the program does not export reduce");
    const ctx = { ...(req.context ?? {}), params: req.params ?? null, progress: throttleProgress(req.onProgress ?? (() => {})) };
    let value: unknown;
    try {
      value = await (f as (a: unknown, c: unknown) => unknown).call(ns, req.argKind === "json" ? (req.arg ?? null) : req.arg, ctx);
    } catch (e) {
      loaded = undefined; // a failed evaluation is not reused
      throw new Error(describe(e));
    }
    let json: string | undefined;
    try {
      json = JSON.stringify(value === undefined ? null : value);
    } catch (e) {
      throw new Error(`the output is not JSON-serialisable: ${describe(e)}`);
    }
    return typeof json === "string" ? json : "null";
  },
};

let current: number | undefined;

const fail = (id: number, message: string) => {
  if (current !== id) return;
  current = undefined;
  loaded = undefined;
  post({ type: "fail", id, message });
};

// An exception thrown later by the program (a timer callback) fails its task, as in Node.
scope.addEventListener("error", (ev) => {
  ev.preventDefault();
  if (current !== undefined) fail(current, describe(ev.error ?? new Error(ev.message)));
});
scope.addEventListener("unhandledrejection", (ev) => ev.preventDefault());

/**
 * Inputs kept by key (an iterative job's shards), mirrored by the page (sandboxPool.ts; sizes
 * are counted once, as the mirror counts them). A unit computes on `working`, refilled from the
 * kept bytes each time: a program may write into its input, and the next unit must not see
 * that. Refilling touched memory costs a fraction of allocating a 1.7 MB copy per unit, which
 * was 8 ms a unit here (page faults, then garbage collection).
 */
const inputs = new InputCache<{ kept: CachedInput; working?: Uint8Array }>();

function keptInput(e: { kept: CachedInput; working?: Uint8Array }): CachedInput {
  if (typeof e.kept === "string") return e.kept;
  e.working ??= new Uint8Array(e.kept.length);
  e.working.set(e.kept);
  return e.working;
}

function receive(data: unknown) {
  const m = data as { type?: string; id?: number; req?: ProgramRequest; inputKey?: unknown; cached?: unknown } | null;
  if (!m || m.type !== "run" || typeof m.id !== "number" || !m.req) return;
  const id = m.id;
  let req = m.req;
  if (typeof m.inputKey === "string") {
    if (m.cached === true) {
      const kept = inputs.get(m.inputKey);
      if (kept === undefined) return post({ type: "missing", id });
      req = { ...req, input: keptInput(kept) };
    } else if (cacheable(req.input)) {
      // This unit computes on the bytes it was sent; the kept ones are a copy, made once.
      inputs.set(m.inputKey, { kept: typeof req.input === "string" ? req.input : req.input.slice() }, inputSize(req.input));
    }
  }
  current = id;
  runProgram(req, {
    jsHost,
    onProgress: (fraction) => {
      if (current === id) post({ type: "progress", id, fraction });
    },
  }).then(
    (r) => {
      if (current !== id) return;
      current = undefined;
      post({ type: "done", id, output: r.output, ms: r.ms });
    },
    (e: unknown) => fail(id, e instanceof Error ? e.message : String(e)),
  );
}

scope.onmessage = (ev: MessageEvent) => {
  const m = ev.data as { t?: string } | null;
  // The page's direct channel (hostPage.ts): from now on tasks come and answers go over it.
  if (m && m.t === "port" && ev.ports[0]) {
    const direct = ev.ports[0];
    direct.onmessage = (e: MessageEvent) => receive(e.data);
    post = direct.postMessage.bind(direct);
    return;
  }
  receive(ev.data);
};

scope.postMessage({ type: "ready" });
