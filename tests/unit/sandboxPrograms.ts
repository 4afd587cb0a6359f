// Small consumer programs for the sandbox tests (unit, integration and e2e): JS sources, and
// WebAssembly written in WAT and compiled with the wabt package.
import wabtInit from "wabt";

let wabt: Awaited<ReturnType<typeof wabtInit>> | undefined;

export async function wat(source: string): Promise<Uint8Array> {
  wabt ??= await wabtInit();
  const mod = wabt.parseWat("test.wat", source);
  try {
    mod.resolveNames();
    mod.validate();
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

// ---- JavaScript ------------------------------------------------------------------------

export const JS = {
  good: `export function run(input, ctx) {
  ctx.progress(0.5);
  return { double: input.n * 2, scale: ctx.params.scale, text: new TextDecoder().decode(new TextEncoder().encode("héllo")) };
}
export function reduce(outputs, ctx) { return outputs.reduce((a, o) => a + o.double, 0) * ctx.params.scale; }
export const comparator = { kind: "tolerance", relative: 1e-9, absolute: 0 };`,
  asyncGood: `export async function run(input) {
  await new Promise((r) => setTimeout(r, 5));
  return input.length;
}`,
  bytes: `export function run(input) { let s = 0; for (const b of input) s += b; return { sum: s, len: input.length, isBytes: input instanceof Uint8Array }; }`,
  throws: `export function run() { throw new TypeError("boom: the input was bad"); }`,
  loops: `export function run() { while (true) {} }`,
  heapHog: `export function run() { const a = []; for (;;) a.push(new Array(100000).fill(1.5)); }`,
  bufferHog: `export function run() { const a = []; for (;;) a.push(new Uint8Array(16 << 20).fill(1)); }`,
  fetches: `export async function run() { const r = await fetch("http://127.0.0.1:9/steal?x=1"); return r.status; }`,
  requires: `export function run() { const r = globalThis["req" + "uire"]; return r("node:fs").readFileSync("/etc/passwd", "utf8"); }`,
  process: `export function run() { return process.env; }`,
  escapes: `export function run() { return this.constructor.constructor("return process")().pid; }`,
  reduceLoops: `export function run(x) { return x; }
export function reduce() { for (;;) {} }`,
  reduceHog: `export function run(x) { return x; }
export function reduce() { const a = []; for (;;) a.push("x".repeat(1 << 16) + a.length); }`,
  /** Tries every way to learn the host's file paths and returns what it saw (see stackProbeFindings). */
  stackProbe: `export async function run(input, ctx) {
  const seen = {};
  const tryIt = (k, f) => { try { seen[k] = f(); } catch (e) { seen[k] = "threw " + (e && e.stack); } };
  const realms = [];
  const note = (e) => { if (e !== null && typeof e === "object" && !(e instanceof Error)) realms.push(String(e && e.stack)); };
  tryIt("plain", () => new Error("plain").stack);
  tryIt("limitless", () => { Error.stackTraceLimit = Infinity; const s = new Error("all").stack; Error.stackTraceLimit = 10; return s; });
  tryIt("structured", () => {
    Error.prepareStackTrace = (e, sites) => sites;
    const s = new Error("sites").stack;
    Error.prepareStackTrace = undefined;
    return Array.isArray(s) ? s.map((c) => [c.getFileName(), c.getScriptNameOrSourceURL(), String(c), typeof c.getFunction(), typeof c.getThis()]) : s;
  });
  tryIt("structuredMapped", () => {
    Error.prepareStackTrace = (e, sites) => sites.map((c) => c.getFileName() + " " + c.constructor.constructor("return 1"));
    const s = new Error("mapped").stack;
    Error.prepareStackTrace = undefined;
    return s;
  });
  tryIt("nested", () => { const pre = new Error("pre"); Error.prepareStackTrace = () => pre.stack; const s = new Error("outer").stack; Error.prepareStackTrace = undefined; return [s, pre.stack]; });
  tryIt("globalError", () => { const E = Error; try { globalThis.Error = { prepareStackTrace: (e, s) => s.map(String) }; } catch (e) {} const s = new E("g").stack; return [typeof globalThis.Error.prepareStackTrace, s]; });
  tryIt("directCall", () => Error.prepareStackTrace(new Error("d"), [{ getFileName: () => "program.js", toString: () => "fake" }]));
  tryIt("captured", () => { const o = {}; Error.captureStackTrace(o); return o.stack; });
  tryIt("getterHeader", () => {
    const pre = new Error("pre2"); let leaked = "none";
    const e = new Error("x");
    Object.defineProperty(e, "message", { get() { leaked = pre.stack; return "m"; } });
    Object.defineProperty(e, "name", { get() { leaked = pre.stack; return "n"; } });
    return [e.stack, leaked];
  });
  tryIt("proxyProto", () => {
    const pre = new Error("pre3"); let leaked = "none";
    const e = new Error("y");
    Object.setPrototypeOf(e, new Proxy(Error.prototype, { get(t, k, r) { leaked = pre.stack; return Reflect.get(t, k, r); }, getOwnPropertyDescriptor(t, k) { leaked = pre.stack; return Reflect.getOwnPropertyDescriptor(t, k); }, getPrototypeOf(t) { leaked = pre.stack; return Reflect.getPrototypeOf(t); } }));
    return [e.stack, leaked];
  });
  tryIt("overflow", () => { const f = (n) => f(n + 1) + 1; try { f(0); } catch (e) { note(e); return e.stack; } });
  tryIt("overflowReadingStacks", () => {
    const out = [];
    for (let pad = 0; pad < 24; pad++) {
      const args = [];
      const f = (n, ...rest) => { try { new Error("z").stack; } catch (e) { note(e); out.push(String(e && e.stack)); throw e; } return f(n + 1, ...rest) + 1; };
      for (let i = 0; i < pad; i++) args.push(i);
      try { f(0, ...args); } catch (e) { note(e); }
    }
    return out.slice(0, 5);
  });
  tryIt("sandboxFunctions", () => {
    const out = [];
    for (const f of [() => setTimeout("x"), () => queueMicrotask(1), () => new TextDecoder("latin1"), () => structuredClone(() => 1), () => ctx.progress(Symbol()), () => new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([255])), () => clearTimeout(Symbol()), () => JSON.parse("{")]) {
      try { f(); out.push("no error"); } catch (e) { note(e); out.push(String(e && e.stack)); }
    }
    return out;
  });
  seen.timer = await new Promise((r) => setTimeout(() => r(new Error("timer").stack), 1));
  seen.microtask = await new Promise((r) => queueMicrotask(() => r(new Error("microtask").stack)));
  seen.afterAwait = await Promise.resolve().then(() => new Error("then").stack);
  seen.realmsOfCaughtErrors = realms;
  return seen;
}`,
  /** Fails with an error whose message is a stack trace, taken in a timer (host code below it). */
  throwsStack: `export async function run() {
  const stack = await new Promise((r) => setTimeout(() => r(new Error("inner").stack), 1));
  throw new Error("what I saw: " + stack);
}`,
  /** Fails with a message that looks like a host path: the volunteer scrubs such things whatever their origin. */
  throwsPath: `export function run() { throw new Error("cannot open /home/someone/tabgrid/worker/sandbox/vmHost.ts or file:///srv/x.js or node:internal/errors:151:7"); }`,
  /**
   * Makes Node's rejection tracking throw a program value with a custom inspector: described by
   * Node's handlers, it would be handed the host's \`inspect\` (the host realm). It writes the
   * file its params name (then returns) if it gets that far.
   */
  inspectorEscape: `export async function run(input, ctx) {
  const X = { [Symbol.for("nodejs.util.inspect.custom")](depth, opts, inspect) {
    try {
      const proc = inspect.constructor("return process")();
      proc.getBuiltinModule("fs").writeFileSync(ctx.params.file, "escaped");
    } catch (e) {}
    return "X";
  } };
  let fired = false;
  const p = Promise.reject(1);
  Object.setPrototypeOf(p, new Proxy(Promise.prototype, { get(t, k, r) {
    if (!fired && typeof k === "symbol" && String(k) === "Symbol(async_id_symbol)") { fired = true; throw X; }
    return Reflect.get(t, k, r);
  } }));
  await new Promise((r) => setTimeout(r, 50));
  return "not stopped";
}`,
  /** Throws, while loading, a proxy whose every host-side look (instanceof, String) throws again. */
  throwsProxyAtLoad: `const evil = { toString() { throw evil; } };
throw new Proxy({}, { getPrototypeOf() { throw evil; } });
export function run() { return 1; }`,
};

/** Whatever in a text looks like a host file: absolute paths, file URLs, Node's internals, script names other than the program's. */
export function hostPathsIn(text: string): string[] {
  const found = [
    ...text.matchAll(/file:\/\/\S*/g),
    ...text.matchAll(/node:internal\S*/g),
    ...text.matchAll(/(?<![\w.:/-])(?:\/[\w.@+~-]+){2,}/g),
    ...text.matchAll(/[\w@+~-]+\.(?:ts|mts|cts|tsx|js|mjs|cjs)\b/g),
  ].map((m) => m[0]);
  return found.filter((f) => f !== "program.js");
}

/**
 * One JS program per way of allocating memory: each allocates far more than 64 MiB (bounded,
 * so a limit that failed would show up as a success rather than exhaust the machine).
 */
export const MEMORY_HOGS = {
  typedArrayFromTypedArray: `export function run() { const keep = []; const e = new Float64Array(1 << 20); for (let i = 0; i < 128; i++) keep.push(new Float64Array(e)); return keep.length; }`,
  typedArrayFromArrayLike: `export function run() { return new Uint8Array({ length: 1 << 30 }).length; }`,
  typedArrayFromIterable: `export function run() { function* g() { for (let i = 0; i < (1 << 28); i++) yield 1; } return new Uint8Array(g()).length; }`,
  arrayBuffer: `export function run() { return new ArrayBuffer(1 << 30).byteLength; }`,
  dataView: `export function run() { return new DataView(new ArrayBuffer(1 << 30)).byteLength; }`,
  resizableArrayBuffer: `export function run() { const b = new ArrayBuffer(1, { maxByteLength: 1 << 30 }); b.resize(1 << 30); return b.byteLength; }`,
  slice: `export function run() { const keep = []; const e = new Uint8Array(16 << 20); for (let i = 0; i < 64; i++) keep.push(e.slice()); return keep.length; }`,
  typedArrayFrom: `export function run() { const keep = []; const e = new Uint8Array(4 << 20); for (let i = 0; i < 32; i++) keep.push(Float64Array.from(e)); return keep.length; }`,
  structuredClone: `export function run() { const keep = []; const big = new Uint8Array(32 << 20); for (let i = 0; i < 32; i++) keep.push(structuredClone(big)); return keep.length; }`,
  arrayFrom: `export function run() { return Array.from({ length: 1e8 }).length; }`,
  growingBuffers: `export function run() { const keep = []; for (let n = 1 << 16; n <= 1 << 30; n *= 2) keep.push(new Uint8Array(n).fill(1)); return keep.length; }`,
  growingArrays: `export function run() { const keep = []; for (let i = 0; i < 2000; i++) keep.push(new Array(100000).fill(1.5)); return keep.length; }`,
};

/** Keeps about 56 MiB, made with every form above: under a limit of 64 MiB, so it must succeed. */
export const UNDER_64_MIB = `export function run() {
  const keep = [];
  for (let i = 0; i < 4; i++) keep.push(new Float64Array(new Float64Array(1 << 19)));
  keep.push(structuredClone(new Uint8Array(4 << 20)), new Uint8Array({ length: 4 << 20 }), new DataView(new ArrayBuffer(4 << 20)), new Uint8Array(4 << 20).slice());
  keep.push(Float64Array.from(new Uint8Array(1 << 19)), Array.from({ length: 1 << 20 }, (_, i) => i));
  const b = new ArrayBuffer(1, { maxByteLength: 8 << 20 }); b.resize(4 << 20); keep.push(b);
  for (let i = 0; i < 8; i++) keep.push(new Uint8Array(1 << 20).fill(1));
  return keep.reduce((a, x) => a + (x.byteLength ?? x.length * 8), 0);
}`;

// ---- WebAssembly -----------------------------------------------------------------------

/** A bump allocator that grows memory as needed (traps past the maximum). */
const ALLOC = `
  (global $heap (mut i32) (i32.const 1024))
  (global $len (mut i32) (i32.const 0))
  (func $alloc (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (block $ok
      (br_if $ok (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
      (br_if $ok (i32.ne (memory.grow (i32.add (i32.div_u (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536)) (i32.const 1))) (i32.const -1)))
      unreachable)
    (local.get $p))
  (func (export "result_len") (result i32) (global.get $len))`;

export const WAT = {
  /** run: the input bytes reversed; reduce: the outputs' payloads concatenated. */
  reverse: `(module
  (memory (export "memory") 1 16)
  ${ALLOC}
  (func (export "run") (param $p i32) (param $n i32) (result i32)
    (local $out i32) (local $i i32)
    (local.set $out (call $alloc (local.get $n)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (i32.add (local.get $out) (local.get $i))
        (i32.load8_u (i32.sub (i32.add (local.get $p) (local.get $n)) (i32.add (local.get $i) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (global.set $len (local.get $n))
    (local.get $out))
  (func (export "reduce") (param $p i32) (param $n i32) (result i32)
    (local $out i32) (local $o i32) (local $i i32) (local $k i32) (local $len i32)
    (local.set $out (call $alloc (local.get $n)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $len (i32.load (i32.add (local.get $p) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (local.set $k (i32.const 0))
      (block $copied (loop $copy
        (br_if $copied (i32.ge_u (local.get $k) (local.get $len)))
        (i32.store8 (i32.add (local.get $out) (local.get $o)) (i32.load8_u (i32.add (local.get $p) (i32.add (local.get $i) (local.get $k)))))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $copy)))
      (local.set $i (i32.add (local.get $i) (local.get $len)))
      (br $next)))
    (global.set $len (local.get $o))
    (local.get $out))
)`,
  traps: `(module
  (memory (export "memory") 1 2)
  ${ALLOC}
  (func (export "run") (param i32 i32) (result i32) unreachable)
)`,
  loops: `(module
  (memory (export "memory") 1 2)
  ${ALLOC}
  (func (export "run") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0))
)`,
  /** Grows memory a page at a time; a refused grow calls env.abort (as AssemblyScript does). */
  growsPastMax: `(module
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (memory (export "memory") 1 4)
  ${ALLOC}
  (func (export "run") (param i32 i32) (result i32)
    (loop $more
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
        (then (call $abort (i32.const 0) (i32.const 0) (i32.const 7) (i32.const 3)) (unreachable)))
      (br $more))
    (i32.const 0))
)`,
  /** Grows its memory (declared maximum: 1024 pages, 64 MiB) 16 pages at a time and traps when a grow is refused. */
  growsToLimit: `(module
  (memory (export "memory") 1 1024)
  ${ALLOC}
  (func (export "run") (param i32 i32) (result i32)
    (loop $more
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
      (br $more))
    (i32.const 0))
)`,
  /** Grows to its whole maximum (64 MiB), touches the last page and succeeds. */
  fillsLimit: `(module
  (memory (export "memory") 1 1024)
  ${ALLOC}
  (func (export "run") (param i32 i32) (result i32)
    (drop (memory.grow (i32.const 1023)))
    (i32.store (i32.const 67108860) (i32.const 1))
    (i32.const 0))
)`,
  noMax: `(module
  (memory (export "memory") 1)
  ${ALLOC}
  (func (export "run") (param i32 i32) (result i32) (i32.const 0))
)`,
  bigMax: `(module
  (memory (export "memory") 1 20000)
  ${ALLOC}
  (func (export "run") (param i32 i32) (result i32) (i32.const 0))
)`,
  importsFetch: `(module
  (import "env" "fetch" (func (param i32) (result i32)))
  (memory (export "memory") 1 2)
  ${ALLOC}
  (func (export "run") (param i32 i32) (result i32) (i32.const 0))
)`,
  noResultLen: `(module
  (memory (export "memory") 1 2)
  (func (export "alloc") (param i32) (result i32) (i32.const 0))
  (func (export "run") (param i32 i32) (result i32) (i32.const 0))
)`,
  badRunSignature: `(module
  (memory (export "memory") 1 2)
  ${ALLOC}
  (func (export "run") (param i32) (result i32) (i32.const 0))
)`,
};

export const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
export const fromB64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));
