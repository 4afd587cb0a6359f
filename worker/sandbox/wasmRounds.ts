// The binary frames of an iterative WebAssembly program (the WASM form of `step`, see abi.ts):
// what a unit's `run` receives in a round, what the server's `step` receives after one, and
// how its answer is read. All integers are u32 little-endian, all numbers f64 little-endian.
// No imports of Node or DOM APIs here: the volunteer's runner (browser and Node) uses it.

import { decodeBase64, encodeBase64 } from "../kernels/base64";
import type { B64Output } from "./abi";

/** A round's input to `run`: `[round][columns][n][n bytes of broadcast][the unit's input]`. */
export function frameRoundInput(round: number, columns: number, broadcast: Uint8Array, input: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + broadcast.length + input.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, round, true);
  view.setUint32(4, columns, true);
  view.setUint32(8, broadcast.length, true);
  out.set(broadcast, 12);
  out.set(input, 12 + broadcast.length);
  return out;
}

/** The bytes of a `{ b64 }` value (a WASM output, broadcast or state); empty for null. */
export function bytesOf(v: unknown, what: string): Uint8Array {
  if (v === null || v === undefined) return new Uint8Array(0);
  if (typeof v === "object" && typeof (v as B64Output).b64 === "string") return decodeBase64((v as B64Output).b64);
  throw new Error(`${what} is not a WASM program's bytes ({ b64 })`);
}

/** A WASM output read as little-endian f64s, for a numeric merge: every value finite. */
export function outputNumbers(v: unknown, i: number): number[] {
  const bytes = bytesOf(v, `output ${i}`);
  if (bytes.length % 8 !== 0) throw new Error(`output ${i} is ${bytes.length} bytes, not a whole number of f64s`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Array<number>(bytes.length / 8);
  for (let j = 0; j < out.length; j++) {
    out[j] = view.getFloat64(j * 8, true);
    if (!Number.isFinite(out[j])) throw new Error(`output ${i} holds ${out[j]} at f64 ${j}`);
  }
  return out;
}

export function f64Bytes(values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 8);
  const view = new DataView(out.buffer);
  values.forEach((x, j) => view.setFloat64(j * 8, x, true));
  return out;
}

/** `step`'s input: `[round][shards][columns][arrived][n][n bytes of state][the merged outputs]`. */
export function frameStepInput(h: { round: number; shards: number; columns: number; arrived: number }, state: Uint8Array, merged: Uint8Array): Uint8Array {
  const out = new Uint8Array(20 + state.length + merged.length);
  const view = new DataView(out.buffer);
  [h.round, h.shards, h.columns, h.arrived, state.length].forEach((x, i) => view.setUint32(i * 4, x, true));
  out.set(state, 20);
  out.set(merged, 20 + state.length);
  return out;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads what a WASM `step` returned, into the shape a JS step returns (bytes as `{ b64 }`):
 * `[0][n][next][n][state][metrics]` for another round, `[1][n][result][metrics]` to end the
 * job; metrics are `[count]` then per metric `[n][name, UTF-8][f64 value]`.
 */
export function readStepOutput(bytes: Uint8Array): Record<string, unknown> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  const need = (n: number, what: string) => {
    if (o + n > bytes.length) throw new Error(`step's output ends inside ${what} (byte ${o} of ${bytes.length})`);
  };
  const u32 = (what: string) => {
    need(4, what);
    const x = view.getUint32(o, true);
    o += 4;
    return x;
  };
  const part = (what: string): B64Output => {
    const n = u32(`the length of ${what}`);
    need(n, what);
    const b64 = encodeBase64(bytes.subarray(o, o + n));
    o += n;
    return { b64 };
  };
  const kind = u32("its kind");
  if (kind > 1) throw new Error(`step's output starts with ${kind}: 0 (another round) or 1 (done)`);
  const out: Record<string, unknown> = kind === 0 ? { next: part("next"), state: part("state") } : { done: true, result: part("result") };
  const count = u32("the metric count");
  if (count > 16) throw new Error(`step returned ${count} metrics; at most 16 are kept`);
  const metrics: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    const n = u32(`metric ${i}'s name length`);
    need(n, `metric ${i}'s name`);
    let name: string;
    try {
      name = utf8.decode(bytes.subarray(o, o + n));
    } catch {
      throw new Error(`metric ${i}'s name is not UTF-8`);
    }
    o += n;
    need(8, `metric ${name}'s value`);
    metrics[name] = view.getFloat64(o, true);
    o += 8;
  }
  if (o !== bytes.length) throw new Error(`step's output has ${bytes.length - o} bytes after its metrics`);
  out.metrics = metrics;
  return out;
}
