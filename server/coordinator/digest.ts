import crypto from "node:crypto";

/**
 * Depth past which a value is serialised by the walk with its own stack instead of the native
 * JSON.stringify, which recurses: on Node 20's default stack it throws RangeError past about
 * 4,000 levels, or 2,200 with a replacer. Outputs from volunteers are bounded far below this
 * (worker/protocol/jsonBounds.ts); values read back from the database may predate that bound.
 */
const NATIVE_MAX_DEPTH = 1000;

const SORTED = 0;
const UNSORTED = 1;
const DEEP = 2;

/**
 * JSON with object keys sorted, so equal values always serialise to the same text. Never
 * overflows the stack, whatever the depth of `value`.
 */
export function canonicalJson(value: unknown): string {
  try {
    // Most outputs (numbers, arrays of numbers, objects whose keys are already in order) need
    // no reordering, and JSON.stringify without a replacer is several times faster.
    const order = orderOf(value, 0);
    if (order === SORTED) return JSON.stringify(value);
    if (order === UNSORTED) return JSON.stringify(value, sortKeys);
  } catch (e) {
    // Out of stack (a value deeper than the order walk saw, or a caller already deep in its
    // own stack): the iterative serialiser below gives the same text.
    if (!(e instanceof RangeError)) throw e;
  }
  return canonicalJsonIterative(value);
}

const byKey = ([a]: [string, unknown], [b]: [string, unknown]) => (a < b ? -1 : a > b ? 1 : 0);

function sortKeys(_key: string, v: unknown): unknown {
  return v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(byKey)) : v;
}

/**
 * SORTED when every object inside `v` already has its keys in sorted order, UNSORTED at the
 * first one that does not, DEEP past NATIVE_MAX_DEPTH (so this recursion stays shallow too).
 */
function orderOf(v: unknown, depth: number): number {
  if (v === null || typeof v !== "object") return SORTED;
  if (depth >= NATIVE_MAX_DEPTH) return DEEP;
  if (Array.isArray(v)) {
    for (const x of v) {
      if (x !== null && typeof x === "object") {
        const order = orderOf(x, depth + 1);
        if (order !== SORTED) return order;
      }
    }
    return SORTED;
  }
  // toJSON (Dates and the like) decides its own form: take the general path.
  if (typeof (v as { toJSON?: unknown }).toJSON === "function") return UNSORTED;
  let prev: string | undefined;
  for (const k in v as Record<string, unknown>) {
    if (!Object.hasOwn(v, k)) continue;
    if (prev !== undefined && !(prev < k)) return UNSORTED;
    prev = k;
    const x = (v as Record<string, unknown>)[k];
    if (x !== null && typeof x === "object") {
      const order = orderOf(x, depth + 1);
      if (order !== SORTED) return order;
    }
  }
  return SORTED;
}

// ---- the same text, without recursion -------------------------------------------------

/** What JSON.stringify does to a member before writing it: toJSON, then sortKeys. */
function prepare(v: unknown, key: string): unknown {
  if ((typeof v === "object" && v !== null) || typeof v === "function" || typeof v === "bigint") {
    const toJSON = (v as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") v = toJSON.call(v, key);
  }
  return sortKeys(key, v);
}

/** A scalar's JSON text, or undefined for what JSON leaves out (undefined, functions, symbols). */
function scalarJson(v: unknown): string | undefined {
  // JSON.stringify itself: string escaping, number formatting (-0, non-finite as null), and
  // the TypeError for a bigint are exactly its own.
  return typeof v === "function" ? undefined : JSON.stringify(v);
}

interface Frame {
  /** The object or array as it was before sortKeys copied it: what a cycle would meet again. */
  source: object;
  array: unknown[] | undefined;
  object: Record<string, unknown> | undefined;
  keys: string[] | undefined;
  next: number;
  written: number;
}

/**
 * canonicalJson's text built with an explicit stack, for values of any depth: the order of
 * JSON.stringify(value, sortKeys) step by step (toJSON, then sorted keys, undefined members
 * left out of objects and written as null in arrays).
 */
export function canonicalJsonIterative(value: unknown): string {
  const out: string[] = [];
  const frames: Frame[] = [];
  const open = new Set<object>();
  // Writes a member; returns false when JSON leaves it out.
  const write = (raw: unknown, key: string, prefix: string): boolean => {
    const v = prepare(raw, key);
    if (v === null || typeof v !== "object") {
      const text = scalarJson(v);
      if (text === undefined) return false;
      out.push(prefix + text);
      return true;
    }
    // sortKeys copies objects (arrays stay themselves): the cycle check is on what was there.
    const source = (Array.isArray(v) ? v : raw) as object;
    if (open.has(source)) throw new TypeError("Converting circular structure to JSON");
    open.add(source);
    const array = Array.isArray(v) ? v : undefined;
    const object = array ? undefined : (v as Record<string, unknown>);
    frames.push({ source, array, object, keys: object && Object.keys(object), next: 0, written: 0 });
    out.push(prefix + (array ? "[" : "{"));
    return true;
  };
  if (!write(value, "", "")) return undefined as unknown as string; // as JSON.stringify(undefined)
  while (frames.length > 0) {
    const f = frames[frames.length - 1];
    const i = f.next++;
    if (f.array) {
      if (i < f.array.length) {
        if (!write(f.array[i], String(i), i > 0 ? "," : "")) out.push(i > 0 ? ",null" : "null");
        continue;
      }
    } else if (i < f.keys!.length) {
      const k = f.keys![i];
      if (write(f.object![k], k, (f.written > 0 ? "," : "") + JSON.stringify(k) + ":")) f.written++;
      continue;
    }
    out.push(f.array ? "]" : "}");
    open.delete(f.source);
    frames.pop();
  }
  return out.join("");
}

/** sha256 of the canonical JSON: what exact validation compares between replicas. */
export function outputDigest(value: unknown): string {
  return digestOf(canonicalJson(value));
}

/** The digest of an already canonical JSON text. */
export function digestOf(json: string): string {
  return crypto.createHash("sha256").update(json).digest("base64url");
}
