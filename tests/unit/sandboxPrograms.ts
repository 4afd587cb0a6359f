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
};

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
