import crypto from "node:crypto";

/** JSON with object keys sorted, so equal values always serialise to the same text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/** sha256 of the canonical JSON: what exact validation compares between replicas. */
export function outputDigest(value: unknown): string {
  return crypto.createHash("sha256").update(canonicalJson(value)).digest("base64url");
}
