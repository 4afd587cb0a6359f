// The Node volunteer's JsHost: evaluates a JS program in a fresh `node:vm` context per task
// (an iterative job's units share one, kept from round to round: see createVmJsHost).
// It runs inside a program process (worker/node/programChild.ts: a child process under a
// kernel memory limit, killed by the pool when the task's wall-clock limit passes) or, where
// that is not available, a worker thread with V8 heap limits (worker/node/programThread.ts).
//
// What the context holds: the ECMAScript built-ins of a new realm (no `process`, `require`,
// `Buffer`, `fetch`, `WebSocket`, file or network API: Node adds none of those to a vm
// context), string code generation refused (`eval`, `new Function`), WebAssembly and
// SharedArrayBuffer removed, and the ABI's small globals (timers, TextEncoder/TextDecoder,
// structuredClone, console, performance.now) implemented inside the context. The host (this
// file) talks to it through one function that only returns primitives (and is handed
// context objects only to ask whether they are proxies), and inputs and outputs cross as JSON
// text, a string or bytes copied into a context-made Uint8Array, so no object of the host
// realm is ever reachable from the program: a host object would hand it the host's
// `Function` constructor (`obj.constructor.constructor("return process")()`), which
// generates code in the host realm where nothing forbids it.
//
// Stack traces are the other way a host object or a host path could reach the program: V8
// builds call sites (host-realm objects, which know every frame's file) and Node formats
// them with host code, which can even throw a host-realm RangeError at the program when the
// program calls it with its stack nearly full. So the context's `Error.prepareStackTrace` is
// fixed to the bootstrap's formatter, which keeps only the program's own frames, reads the
// error's name and message without running program code (no getter, no proxy trap: program
// code run while V8 formats a stack would see the next stack it reads formatted by V8 itself,
// host frames and all), and never hands a call site out. In a program process the formatter
// is also installed as the isolate's own stack-trace callback (`installStackFormatter`), so
// that no host code at all runs when the program reads a stack.
//
// The limits of this boundary, stated plainly: node:vm is not a security mechanism in
// Node's own words. It keeps honest-but-buggy and casually malicious code away from the
// host, but a V8 or Node bug that leaks a host object (there have been some; `import()` is
// one such path, which is why scripts containing it are refused here) gives the program the
// process it runs in. A program process is started with string code generation disallowed
// everywhere, Node's permission model (no file system, no child processes), an empty
// environment and nothing but this sandbox's code loaded, which narrows what such a bug
// yields; the network stays reachable. The browser sandbox (an opaque-origin iframe under a
// no-network CSP) is the strong one; people running the headless volunteer for strangers'
// programs should run it as an unprivileged user or in a container without credentials.
//
// Memory: in a program process the kernel enforces the limit (worker/node/programProcess.ts),
// whatever the program allocates with. V8 then refuses the allocation with a RangeError, which
// the bootstrap reports as the memory limit, or the process dies, which the pool reports the
// same way. In the worker-thread fallback the thread's V8 heap is capped by resourceLimits,
// but ArrayBuffer memory lives outside the heap, so `countArrayBuffers` wraps the context's
// ArrayBuffer and typed-array constructors (and the few methods that allocate without going
// through them) to refuse allocations that would take the thread's external memory past the
// task's limit: best effort, which is why the process is preferred.

import util from "node:util";
import v8 from "node:v8";
import vm from "node:vm";
import { ALLOCATION_FAILURE, formatMiB, hasDynamicImport, memoryLimitMessage, PROGRAM_GLOBAL } from "./abi";
import { POLYFILL_SOURCE } from "./polyfills";
import { throttleProgress, type JsHost } from "./runProgram";

type Host = (op: string, a?: unknown, b?: unknown) => unknown;

/** A context's stack formatter, with the signature of an isolate's stack-trace callback. */
export type StackFormatter = (global: unknown, error: unknown, sites: unknown) => string;

interface ContextApi {
  /** Starts a call: the previous one's timers are dropped and its late callbacks ignored. */
  begin(): void;
  /** The context-made array a bytes input is copied into; for an input kept by `ref`, the same one each time. */
  allocInput(n: number, ref?: string): Uint8Array;
  call(fn: string, argKind: string, arg: unknown, ctxJson: string): void;
  fire(id: number): void;
  describe(e: unknown): string;
  isOutOfMemory(e: unknown): boolean;
  formatStack: StackFormatter;
}

export interface VmJsHostOptions {
  /**
   * Wrap the context's ArrayBuffer and typed-array constructors to count ArrayBuffer memory
   * against the task's limit (the worker-thread fallback, where nothing else limits it).
   */
  countArrayBuffers?: boolean;
  /**
   * Called with each new context's stack formatter before the program runs, to make it the
   * isolate's stack-trace callback (a program process does; see programChild.ts).
   */
  installStackFormatter?: (format: StackFormatter) => void;
}

// Evaluated first in every new context, before any program code: it captures the intrinsics
// it relies on, so a program that tampers with built-ins can only confuse itself.
const BOOTSTRAP_SOURCE = String.raw`(function (host, limit, limitText, programGlobal, countArrayBuffers, allocationFailure) {
  "use strict";
  const g = globalThis;
  const RApply = Reflect.apply, RConstruct = Reflect.construct, defineProperty = Object.defineProperty;
  const getOwnDesc = Object.getOwnPropertyDescriptor, getProto = Object.getPrototypeOf, hasOwn = Object.prototype.hasOwnProperty;
  const ProxyCtor = Proxy, Uint8 = Uint8Array, StringCtor = String, MapCtor = Map, ErrorCtor = Error, RangeErrorCtor = RangeError, TypeErrorCtor = TypeError;
  const rangeErrorProto = RangeError.prototype;
  const mapGet = Map.prototype.get, mapSet = Map.prototype.set, mapDelete = Map.prototype.delete, mapClear = Map.prototype.clear;
  const stringify = JSON.stringify, parse = JSON.parse;
  const PromiseCtor = Promise, promiseResolve = Promise.resolve, then = Promise.prototype.then;
  const strMatch = String.prototype.match, reTest = RegExp.prototype.test;
  const outOfMemory = new RegExp(allocationFailure + "|^memory limit of ", "i");
  // A host error (a stack overflow that happens to strike inside the host function) must
  // never reach the program: it would carry the host realm's constructors.
  const callHost = (op, a, b) => { try { return host(op, a, b); } catch (_) { return undefined; } };

  delete g.WebAssembly;
  delete g.SharedArrayBuffer;

  // ---- stack traces: the program's own frames, formatted without running any program code
  const isObject = (o) => o !== null && (typeof o === "object" || typeof o === "function");
  // An own data property's value; never a getter, and never on a proxy (whose traps are code).
  const dataProp = (o, k) => {
    const d = getOwnDesc(o, k);
    return d !== undefined && RApply(hasOwn, d, ["value"]) ? d.value : undefined;
  };
  const headerOf = (error) => {
    let name, message, o = error;
    for (let i = 0; i < 32 && isObject(o) && (name === undefined || message === undefined); i++) {
      if (callHost("isProxy", o) !== false) break;
      if (name === undefined) name = dataProp(o, "name");
      if (message === undefined) message = dataProp(o, "message");
      o = getProto(o);
    }
    name = typeof name === "string" ? name : "Error";
    message = typeof message === "string" ? message : "";
    return name === "" ? message : message === "" ? name : name + ": " + message;
  };
  // Call sites belong to the host realm and know every frame: they never leave this function.
  // Kept: the program's frames, and built-in frames (no file) between two of them; not the
  // sandbox's own (bootstrap, polyfills) nor, of course, the host's.
  const framesOf = (sites) => {
    let out = "", between = "";
    const n = sites.length;
    for (let i = 0; i < n && i < 1000; i++) {
      let file, text;
      try {
        const site = sites[i];
        file = site.getFileName();
        text = site.toString();
      } catch (_) {
        between = "";
        continue;
      }
      if (typeof text !== "string") between = "";
      else if (file === "program.js") {
        out += between + "\n    at " + text;
        between = "";
      } else if (file === undefined || file === null || file === "") between += "\n    at " + text;
      else between = "";
    }
    return out;
  };
  const formatStack = (error, sites) => {
    let head = "Error", frames = "";
    try { head = headerOf(error); } catch (_) {}
    try { frames = framesOf(sites); } catch (_) {}
    return head + frames;
  };
  // Node asks the error's realm for Error.prepareStackTrace: always this one. A program may
  // assign its own (libraries do); it is kept out of the way, as in browsers without the API.
  const prepareStackTrace = function prepareStackTrace(error, sites) { return formatStack(error, sites); };
  defineProperty(ErrorCtor, "prepareStackTrace", { get: () => prepareStackTrace, set: (_) => {}, enumerable: false, configurable: false });
  defineProperty(g, "Error", { value: ErrorCtor, writable: false, enumerable: false, configurable: false });

  // ---- running out of memory: whatever V8 refused, the task fails with the limit's message
  const isOutOfMemory = (e) => {
    try {
      if (!isObject(e) || callHost("isProxy", e) !== false || getProto(e) !== rangeErrorProto) return false;
      const m = dataProp(e, "message");
      return typeof m === "string" && RApply(reTest, outOfMemory, [m]);
    } catch (_) {
      return false;
    }
  };

  // ---- worker-thread fallback: count ArrayBuffer memory (outside the V8 heap) against the limit
  if (countArrayBuffers) {
    let count = 0;
    const overLimit = (n) => { const ext = callHost("external"); return typeof ext === "number" && ext + n > limit; };
    const refuse = () => { throw new RangeErrorCtor("memory limit of " + limitText + " exceeded"); };
    const before = (n) => { if (n >= 65536 && overLimit(n)) refuse(); };
    const after = (r) => {
      const big = isObject(r) && typeof r.byteLength === "number" && r.byteLength >= 65536;
      if ((big || (++count & 63) === 0) && overLimit(0)) refuse();
    };
    const wrapCtor = (C, bytesOf) => {
      const P = new ProxyCtor(C, {
        construct(target, args, newTarget) {
          const n = bytesOf(args);
          if (n > 0) before(n);
          const r = RConstruct(target, args, newTarget === P ? target : newTarget);
          after(r);
          return r;
        },
      });
      defineProperty(C.prototype, "constructor", { value: P, writable: true, configurable: true, enumerable: false });
      defineProperty(g, C.name, { value: P, writable: true, configurable: true, enumerable: false });
    };
    const wrapMethod = (proto, name, bytesOf) => {
      const f = proto[name];
      if (typeof f !== "function") return;
      const w = { [name](...args) { before(bytesOf(this, args)); const r = RApply(f, this, args); after(r); return r; } }[name];
      defineProperty(proto, name, { value: w, writable: true, configurable: true, enumerable: false });
    };
    const num = (x) => (typeof x === "number" && x > 0 ? x : 0);
    // A length, or an array-like's or typed array's length (an ArrayBuffer argument allocates nothing).
    const lengthOf = (x) => (typeof x === "number" ? num(x) : isObject(x) && typeof x.length === "number" ? num(x.length) : 0);
    wrapCtor(ArrayBuffer, (a) => num(a[0]));
    wrapMethod(ArrayBuffer.prototype, "resize", (self, a) => num(a[0]));
    wrapMethod(ArrayBuffer.prototype, "transfer", (self, a) => num(a[0]));
    wrapMethod(ArrayBuffer.prototype, "transferToFixedLength", (self, a) => num(a[0]));
    const typed = ["Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array", "Uint32Array",
      "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array", "Float16Array"];
    for (const name of typed) {
      const C = g[name];
      if (typeof C !== "function") continue;
      const bpe = C.BYTES_PER_ELEMENT;
      wrapCtor(C, (a) => lengthOf(a[0]) * bpe);
    }
    // These copy a typed array without going through its (wrapped) constructor.
    const TypedProto = getProto(Uint8.prototype);
    for (const name of ["toReversed", "toSorted", "with"]) wrapMethod(TypedProto, name, (self) => num(self.byteLength));
  }

  // ---- the ABI's globals
  // Timers are [fn, args, call]: a callback belongs to the call that scheduled it.
  const timers = new MapCtor();
  let nextTimer = 1;
  // The call in progress ({ failed }): a kept context runs one call after another, and what a
  // previous call left behind (a late rejection, a callback) must not end the current one.
  let current = { failed: false };
  const describe = (e) => {
    try {
      if (e !== null && (typeof e === "object" || typeof e === "function")) {
        const name = e.name, message = e.message, stack = e.stack;
        if (typeof message === "string") {
          let where = "";
          if (typeof stack === "string") {
            const m = RApply(strMatch, stack, [/program\.js:(\d+):(\d+)/]);
            if (m) where = " (at line " + m[1] + ", column " + m[2] + " of the compiled program)";
          }
          return (typeof name === "string" && name ? name : "Error") + ": " + message + where;
        }
      }
      return "a non-Error value was thrown: " + StringCtor(e);
    } catch (_) {
      return "the program threw something that cannot be described";
    }
  };
  const failIn = (run, e) => {
    if (run !== current || run.failed) return;
    run.failed = true;
    if (isOutOfMemory(e)) callHost("outOfMemory");
    else callHost("fail", describe(e));
  };
  defineProperty(g, "setTimeout", { writable: true, configurable: true, value: function setTimeout(fn, ms, ...args) {
    if (typeof fn !== "function") throw new TypeErrorCtor("setTimeout needs a function (strings are not evaluated)");
    const id = nextTimer++;
    RApply(mapSet, timers, [id, [fn, args, current]]);
    callHost("setTimer", id, +ms || 0);
    return id;
  } });
  defineProperty(g, "clearTimeout", { writable: true, configurable: true, value: function clearTimeout(id) {
    if (RApply(mapDelete, timers, [id])) callHost("clearTimer", id);
  } });
  defineProperty(g, "queueMicrotask", { writable: true, configurable: true, value: function queueMicrotask(fn) {
    if (typeof fn !== "function") throw new TypeErrorCtor("queueMicrotask needs a function");
    const run = current;
    RApply(then, RApply(promiseResolve, PromiseCtor, []), [() => { try { fn(); } catch (e) { failIn(run, e); } }]);
  } });
  defineProperty(g, "performance", { writable: true, configurable: true, value: { now: () => { const t = callHost("now"); return typeof t === "number" ? t : 0; } } });

  let input;
  // Kept inputs (a shard, by its content hash) are copied into the same array every time: a
  // fresh 1.7 MB array per unit made each program process collect its garbage every few rounds
  // (external memory pressure, and the forced collection between tasks). A program that wrote
  // into its input gets it refilled; an array is only ever refilled with the same bytes.
  const working = new MapCtor();
  let workingBytes = 0;
  const workingMax = limit / 8;
  return {
    begin() {
      RApply(mapClear, timers, []);
      current = { failed: false };
    },
    allocInput(n, ref) {
      if (typeof ref !== "string") return (input = new Uint8(n));
      const w = RApply(mapGet, working, [ref]);
      if (w !== undefined && w[1] === n) return (input = w[0]);
      if (workingBytes + n > workingMax) {
        RApply(mapClear, working, []);
        workingBytes = 0;
      }
      input = new Uint8(n);
      if (n <= workingMax) {
        RApply(mapSet, working, [ref, [input, n]]);
        workingBytes += n;
      }
      return input;
    },
    describe,
    isOutOfMemory,
    formatStack: (global, error, sites) => formatStack(error, sites),
    fire(id) {
      const t = RApply(mapGet, timers, [id]);
      if (!t) return;
      RApply(mapDelete, timers, [id]);
      if (t[2] !== current) return;
      try { RApply(t[0], undefined, t[1]); } catch (e) { failIn(t[2], e); }
    },
    call(fn, argKind, arg, ctxJson) {
      const run = current;
      try {
        const ns = g[programGlobal];
        const f = ns == null ? undefined : ns[fn];
        if (typeof f !== "function") { run.failed = true; callHost("fail", fn === "run" ? "the program does not export a run function" : "the program does not export reduce"); return; }
        const value = argKind === "json" ? parse(arg) : argKind === "bytes" ? input : arg;
        // ctx: the job's params and the task's other fields (round, broadcast, columns), parsed in here.
        const ctx = parse(ctxJson);
        ctx.progress = (fraction) => { if (run === current) callHost("progress", +fraction); };
        const p = RApply(promiseResolve, PromiseCtor, [RApply(f, ns, [value, ctx])]);
        RApply(then, p, [
          (v) => {
            if (run !== current || run.failed) return;
            let s;
            try { s = stringify(v === undefined ? null : v); } catch (e) {
              run.failed = true;
              if (isOutOfMemory(e)) callHost("outOfMemory"); else callHost("fail", "the output is not JSON-serialisable: " + describe(e));
              return;
            }
            run.failed = true;
            callHost("done", typeof s === "string" ? s : "null");
          },
          (e) => failIn(run, e),
        ]);
      } catch (e) {
        failIn(run, e);
      }
    },
  };
})`;

const bootstrapScript = new vm.Script(BOOTSTRAP_SOURCE, { filename: "tabgrid-bootstrap.js" });
const polyfillScript = new vm.Script(POLYFILL_SOURCE, { filename: "tabgrid-polyfills.js" });

const SCRIPT_CACHE = 4;
const scripts = new Map<string, vm.Script>();

function programScript(hash: string, source: string): vm.Script {
  const key = `${hash}:${source.length}`;
  let s = scripts.get(key);
  if (!s) {
    if (hasDynamicImport(source)) throw new Error("the program uses import(), which is not available to programs");
    // A syntax error here is a host SyntaxError (compilation happens in the host): safe to throw.
    s = new vm.Script(source, { filename: "program.js" });
    scripts.set(key, s);
    for (const k of scripts.keys()) {
      if (scripts.size <= SCRIPT_CACHE) break;
      scripts.delete(k);
    }
  }
  return s;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** A context whose program is loaded, kept for the next call with the same key. */
interface Evaluation {
  api: ContextApi;
  /** Where the context's host function sends each call's requests (the bootstrap holds one function for good). */
  slot: { host: Host };
}

type BootFn = (h: Host, limit: number, limitText: string, global: string, countArrayBuffers: boolean, allocationFailure: string) => ContextApi;

/**
 * A JsHost evaluating each call in a new vm context (fresh module state for every task), but
 * for calls given a `keep` key (an iterative job's units): those share one context, kept
 * until a call with another key (or none) comes or a call fails, so the program's code stays
 * compiled and optimised from one unit to the next. One context is kept at a time.
 */
export function createVmJsHost(opts: VmJsHostOptions = {}): JsHost {
  let kept: (Evaluation & { key: string }) | undefined;
  return {
    call(req) {
      return new Promise<string>((resolve, reject) => {
        let settled = false;
        const timers = new Map<number, ReturnType<typeof setTimeout>>();
        const progress = req.onProgress ? throttleProgress(req.onProgress) : undefined;
        const outOfMemory = memoryLimitMessage(req.memoryLimitBytes);
        let api: ContextApi | undefined;
        const finish = (ok: boolean, value: string) => {
          if (settled) return;
          settled = true;
          for (const t of timers.values()) clearTimeout(t);
          timers.clear();
          // A context whose call failed (its memory exhausted, its state broken) is not reused.
          if (!ok && kept?.api === api) kept = undefined;
          if (ok) resolve(value);
          else reject(new Error(value));
        };
        // Only primitives out, never throws; the objects it is handed are only looked at by isProxy.
        const host: Host = (op, a, b) => {
          try {
            switch (op) {
              case "isProxy":
                return util.types.isProxy(a);
              case "external":
                return v8.getHeapStatistics().external_memory;
              case "now":
                return performance.now();
              case "progress":
                if (typeof a === "number") progress?.(a);
                return undefined;
              case "setTimer":
                if (typeof a === "number" && typeof b === "number" && !settled) {
                  const ms = Math.min(Math.max(0, b), MAX_TIMER_MS);
                  timers.set(a, setTimeout(() => {
                    timers.delete(a);
                    if (settled) return;
                    try {
                      api!.fire(a);
                    } catch {
                      // fire() catches the program's errors itself; nothing else can arrive here.
                    }
                  }, ms));
                }
                return undefined;
              case "clearTimer":
                if (typeof a === "number") {
                  clearTimeout(timers.get(a));
                  timers.delete(a);
                }
                return undefined;
              case "done":
                if (typeof a === "string") finish(true, a);
                return undefined;
              case "fail":
                finish(false, typeof a === "string" ? a : "the program failed");
                return undefined;
              case "outOfMemory":
                finish(false, outOfMemory);
                return undefined;
              default:
                return undefined;
            }
          } catch {
            return undefined;
          }
        };
        try {
          const script = programScript(req.hash, req.script);
          const key = req.keep === undefined ? undefined : `${req.keep}\n${req.hash}\n${req.memoryLimitBytes}`;
          const reused = key !== undefined && kept?.key === key;
          if (reused) {
            kept!.slot.host = host;
            api = kept!.api;
            opts.installStackFormatter?.(api.formatStack);
            api.begin();
          } else {
            kept = undefined;
            const slot = { host };
            // An ordinary global object (no interceptors to a host-side sandbox object): every
            // global the program reads in a hot loop (Math, Float64Array) is a plain property
            // load, 5x faster than through a contextified global, and no host object at all
            // stands behind the context's global.
            const context = vm.createContext(vm.constants.DONT_CONTEXTIFY, {
              name: "tabgrid program",
              codeGeneration: { strings: false, wasm: false },
            });
            const boot = bootstrapScript.runInContext(context) as BootFn;
            const trampoline: Host = (op, a, b) => slot.host(op, a, b);
            api = boot(trampoline, req.memoryLimitBytes, formatMiB(req.memoryLimitBytes), PROGRAM_GLOBAL, opts.countArrayBuffers === true, ALLOCATION_FAILURE.source);
            opts.installStackFormatter?.(api.formatStack);
            polyfillScript.runInContext(context);
            // Before any program code runs (the bootstrap's Uint8Array is its own anyway).
            if (req.argKind === "bytes") allocBytes(api, req.arg, req.inputRef);
            try {
              script.runInContext(context, { displayErrors: false });
            } catch (e) {
              // The program's own exception is an object of the context: only the bootstrap touches
              // it (a host `instanceof` ran a proxy's getPrototypeOf trap here, which threw on).
              if (api.isOutOfMemory(e)) finish(false, outOfMemory);
              else finish(false, `the program failed while loading: ${api.describe(e)}`);
              return;
            }
            if (key !== undefined) kept = { key, api, slot };
          }
          if (reused && req.argKind === "bytes") allocBytes(api, req.arg, req.inputRef);
          const arg = req.argKind === "json" ? JSON.stringify(req.arg ?? null) : req.argKind === "text" ? String(req.arg) : null;
          api.call(req.fn, req.argKind, arg, JSON.stringify({ ...(req.context ?? {}), params: req.params ?? null }));
        } catch (e) {
          const message = hostErrorMessage(e, "the program could not be run");
          finish(false, ALLOCATION_FAILURE.test(message) ? outOfMemory : message);
        }
      });
    },
  };
}

/**
 * The message of what a host-side `catch` caught, running no code of whatever it is: a host
 * Error's own `message`, else `fallback`. `instanceof`, `String()` and property reads run a
 * program value's proxy traps, getters and `toString`, which may throw it on out of the catch.
 */
export function hostErrorMessage(e: unknown, fallback: string): string {
  if (typeof e === "string") return e;
  if (typeof e !== "object" || e === null || util.types.isProxy(e) || !util.types.isNativeError(e)) return fallback;
  const own = Object.getOwnPropertyDescriptor(e, "message");
  return own && typeof own.value === "string" ? own.value : fallback;
}

/**
 * The host realm's own `%TypedArray%.prototype.set`. A context-made array's `set` is looked up
 * on the context's prototypes, which the program may have replaced by the time a kept context
 * runs its next unit: called that way, the copy handed the host's Uint8Array (and through it
 * the host realm's `Function` and `Object.prototype`) to the program.
 */
const typedArraySet = Object.getPrototypeOf(Uint8Array.prototype).set as (this: Uint8Array, source: ArrayLike<number>) => void;

/** Copies a bytes input into a context-made Uint8Array (no host buffer reaches the program). */
function allocBytes(api: ContextApi, arg: unknown, ref: string | undefined) {
  if (!(arg instanceof Uint8Array)) throw new Error("a bytes input must be a Uint8Array");
  Reflect.apply(typedArraySet, api.allocInput(arg.length, ref), [arg]);
}
