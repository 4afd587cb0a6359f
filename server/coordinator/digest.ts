import crypto from "node:crypto";

/** JSON with object keys sorted, so equal values always serialise to the same text. */
export function canonicalJson(value: unknown): string {
  // Most outputs (numbers, arrays of numbers, objects whose keys are already in order) need
  // no reordering, and JSON.stringify without a replacer is several times faster.
  return sorted(value) ? JSON.stringify(value) : JSON.stringify(value, sortKeys);
}

function sortKeys(_key: string, v: unknown): unknown {
  return v && typeof v === "object" && !Array.isArray(v)
    ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : v;
}

/** Whether every object inside `v` already has its keys in sorted order. */
function sorted(v: unknown): boolean {
  if (v === null || typeof v !== "object") return true;
  if (Array.isArray(v)) {
    for (const x of v) if (x !== null && typeof x === "object" && !sorted(x)) return false;
    return true;
  }
  // toJSON (Dates and the like) decides its own form: take the general path.
  if (typeof (v as { toJSON?: unknown }).toJSON === "function") return false;
  let prev: string | undefined;
  for (const k in v as Record<string, unknown>) {
    if (!Object.hasOwn(v, k)) continue;
    if (prev !== undefined && !(prev < k)) return false;
    prev = k;
    const x = (v as Record<string, unknown>)[k];
    if (x !== null && typeof x === "object" && !sorted(x)) return false;
  }
  return true;
}

/** sha256 of the canonical JSON: what exact validation compares between replicas. */
export function outputDigest(value: unknown): string {
  return digestOf(canonicalJson(value));
}

/** The digest of an already canonical JSON text. */
export function digestOf(json: string): string {
  return crypto.createHash("sha256").update(json).digest("base64url");
}
