import { formatMiB, WASM_PAGE } from "./abi";

// A small reader of the WebAssembly binary format: just the sections that say what a module
// imports and exports, its function signatures and its memories' declared limits. The JS API
// (WebAssembly.Module.imports/exports) does not expose a memory's maximum or a function's
// type, and the sandbox must know both before it runs anything. Pure code: it runs on the
// server (upload checks) and inside workers (the volunteer checks again for itself).

export type ValType = "i32" | "i64" | "f32" | "f64" | "v128" | "ref";
export interface FuncType {
  params: ValType[];
  results: ValType[];
}
export interface MemoryLimits {
  /** In 64 KiB pages. */
  min: number;
  max?: number;
  shared: boolean;
  is64: boolean;
}
export type ExternKind = "function" | "table" | "memory" | "global" | "tag";
export interface WasmImport {
  module: string;
  name: string;
  kind: ExternKind;
  /** Function imports: the signature, when the type section could be read. */
  type?: FuncType;
}
export interface WasmExport {
  name: string;
  kind: ExternKind;
  index: number;
}
export interface WasmInfo {
  imports: WasmImport[];
  exports: WasmExport[];
  /** Every memory, imported ones first (the order of the memory index space). */
  memories: MemoryLimits[];
  /** The signature of each function (imported ones first); undefined where unknown. */
  funcTypes: Array<FuncType | undefined>;
}

const KINDS: ExternKind[] = ["function", "table", "memory", "global", "tag"];

class Reader {
  pos = 0;
  constructor(
    readonly bytes: Uint8Array,
    readonly end = bytes.length,
  ) {}
  fail(what: string): never {
    throw new Error(`not a valid WebAssembly module: ${what} at byte ${this.pos}`);
  }
  byte(): number {
    if (this.pos >= this.end) this.fail("unexpected end");
    return this.bytes[this.pos++];
  }
  /** Unsigned LEB128, up to 64 bits (as a JS number, exact below 2^53). */
  u(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.byte();
      result += (b & 0x7f) * mul;
      if (!(b & 0x80)) return result;
      mul *= 128;
    }
    this.fail("LEB128 number too long");
  }
  /** Signed LEB128 (heap types are s33); only skipped over, the value is not needed. */
  skipS(): void {
    for (let i = 0; i < 10; i++) if (!(this.byte() & 0x80)) return;
    this.fail("LEB128 number too long");
  }
  name(): string {
    const len = this.u();
    if (this.pos + len > this.end) this.fail("name runs past its section");
    const s = new TextDecoder().decode(this.bytes.subarray(this.pos, this.pos + len));
    this.pos += len;
    return s;
  }
  valType(): ValType {
    const b = this.byte();
    switch (b) {
      case 0x7f:
        return "i32";
      case 0x7e:
        return "i64";
      case 0x7d:
        return "f32";
      case 0x7c:
        return "f64";
      case 0x7b:
        return "v128";
      case 0x63:
      case 0x64:
        this.skipS();
        return "ref";
      default:
        if (b >= 0x69 && b <= 0x74) return "ref"; // abbreviated reference types (funcref, externref, …)
        this.fail(`unknown value type 0x${b.toString(16)}`);
    }
  }
  limits(): MemoryLimits {
    const flags = this.byte();
    if (flags > 0x07) this.fail(`unknown limits flags 0x${flags.toString(16)}`);
    const min = this.u();
    const max = flags & 1 ? this.u() : undefined;
    return { min, ...(max !== undefined ? { max } : {}), shared: !!(flags & 2), is64: !!(flags & 4) };
  }
}

/** Reads a module's imports, exports, function types and memory limits; throws on malformed input. */
export function readWasmInfo(bytes: Uint8Array): WasmInfo {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new Error("not a WebAssembly module (it does not start with \\0asm)");
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) throw new Error("unsupported WebAssembly binary version");
  const info: WasmInfo = { imports: [], exports: [], memories: [], funcTypes: [] };
  let types: Array<FuncType | undefined> | undefined = [];
  const top = new Reader(bytes);
  top.pos = 8;
  while (top.pos < bytes.length) {
    const id = top.byte();
    const size = top.u();
    const end = top.pos + size;
    if (end > bytes.length) top.fail(`section ${id} runs past the end of the file`);
    const r = new Reader(bytes, end);
    r.pos = top.pos;
    switch (id) {
      case 1: // types
        types = readTypes(r);
        break;
      case 2: // imports
        for (let n = r.u(); n > 0; n--) {
          const module = r.name();
          const name = r.name();
          const kindByte = r.byte();
          const kind = KINDS[kindByte] ?? r.fail(`unknown import kind ${kindByte}`);
          const imp: WasmImport = { module, name, kind };
          if (kind === "function") {
            const t = types?.[r.u()];
            if (t) imp.type = t;
            info.funcTypes.push(t);
          } else if (kind === "table") {
            r.valType();
            r.limits();
          } else if (kind === "memory") {
            info.memories.push(r.limits());
          } else if (kind === "global") {
            r.valType();
            r.byte();
          } else {
            r.byte();
            r.u();
          }
          info.imports.push(imp);
        }
        break;
      case 3: // functions
        for (let n = r.u(); n > 0; n--) info.funcTypes.push(types?.[r.u()]);
        break;
      case 5: // memories
        for (let n = r.u(); n > 0; n--) info.memories.push(r.limits());
        break;
      case 7: // exports
        for (let n = r.u(); n > 0; n--) {
          const name = r.name();
          const kindByte = r.byte();
          const kind = KINDS[kindByte] ?? r.fail(`unknown export kind ${kindByte}`);
          info.exports.push({ name, kind, index: r.u() });
        }
        break;
      default:
        break; // code, data, custom sections…: not needed
    }
    top.pos = end;
  }
  return info;
}

/** Plain function types only; a module using the GC proposal's type forms gets no signatures (checks are skipped). */
function readTypes(r: Reader): Array<FuncType | undefined> | undefined {
  const out: FuncType[] = [];
  for (let n = r.u(); n > 0; n--) {
    if (r.byte() !== 0x60) return undefined;
    const params: ValType[] = [];
    for (let k = r.u(); k > 0; k--) params.push(r.valType());
    const results: ValType[] = [];
    for (let k = r.u(); k > 0; k--) results.push(r.valType());
    out.push({ params, results });
  }
  return out;
}

// ---- the ABI's requirements ----------------------------------------------------------

const SIGNATURES: Record<string, FuncType> = {
  alloc: { params: ["i32"], results: ["i32"] },
  run: { params: ["i32", "i32"], results: ["i32"] },
  result_len: { params: [], results: ["i32"] },
  reduce: { params: ["i32", "i32"], results: ["i32"] },
  step: { params: ["i32", "i32"], results: ["i32"] },
};
const ABORT: FuncType = { params: ["i32", "i32", "i32", "i32"], results: [] };

const sig = (t: FuncType) => `(${t.params.join(", ")}) -> ${t.results.length ? t.results.join(", ") : "nothing"}`;
const same = (a: FuncType, b: FuncType) => sig(a) === sig(b);
const pages = (bytes: number) => Math.floor(bytes / WASM_PAGE);

export interface WasmAbiCheck {
  exports: string[];
  hasReduce: boolean;
  /** The exported memory's declared maximum, in bytes. */
  maxMemoryBytes: number;
}

/**
 * Checks a parsed module against the program ABI (see abi.ts) and a memory limit; throws an
 * Error saying what is wrong and how to fix it.
 */
export function checkWasmAbi(info: WasmInfo, memoryLimitBytes: number): WasmAbiCheck {
  for (const imp of info.imports) {
    if (imp.module === "env" && imp.name === "abort" && imp.kind === "function") {
      if (imp.type && !same(imp.type, ABORT)) throw new Error(`the import env.abort must have the signature ${sig(ABORT)}, not ${sig(imp.type)}`);
      continue;
    }
    throw new Error(
      `the module imports ${imp.kind} "${imp.module}.${imp.name}": programs must be self-contained (the only import allowed is the function env.abort)`,
    );
  }
  const byName = new Map(info.exports.map((e) => [e.name, e]));
  const missing = ["memory", "alloc", "run", "result_len"].filter((n) => !byName.has(n));
  if (missing.length) throw new Error(`the module does not export ${missing.join(", ")} (a program exports memory, alloc, run and result_len)`);
  for (const name of ["alloc", "run", "result_len", "reduce", "step"]) {
    const e = byName.get(name);
    if (!e) continue;
    if (e.kind !== "function") throw new Error(`the export "${name}" must be a function, not a ${e.kind}`);
    const t = info.funcTypes[e.index];
    if (t && !same(t, SIGNATURES[name])) throw new Error(`the export "${name}" must have the signature ${sig(SIGNATURES[name])}, not ${sig(t)}`);
  }
  const memExport = byName.get("memory")!;
  if (memExport.kind !== "memory") throw new Error(`the export "memory" must be a memory, not a ${memExport.kind}`);
  const mem = info.memories[memExport.index];
  if (!mem) throw new Error("the exported memory does not exist");
  if (mem.is64) throw new Error("64-bit memories are not supported");
  if (mem.shared) throw new Error("shared memories are not supported");
  const limit = `${pages(memoryLimitBytes)} pages (${formatMiB(memoryLimitBytes)})`;
  if (mem.max === undefined) {
    throw new Error(`the exported memory declares no maximum: declare one of at most ${limit} (e.g. (memory (export "memory") 1 ${pages(memoryLimitBytes)}))`);
  }
  const maxBytes = mem.max * WASM_PAGE;
  if (maxBytes > memoryLimitBytes) {
    throw new Error(`the exported memory's maximum of ${mem.max} pages (${formatMiB(maxBytes)}) is above the limit of ${limit}`);
  }
  return { exports: info.exports.map((e) => e.name), hasReduce: byName.has("reduce"), maxMemoryBytes: maxBytes };
}
