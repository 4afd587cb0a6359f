import type { Comparator } from "./types.js";

/**
 * Whether two outputs of one unit count as the same answer.
 *
 * Both must have the same shape: arrays of the same length, objects with the same own keys
 * (in any order), equal strings, booleans and nulls. Numbers must be equal for "exact"; for
 * "tolerance" they may differ by max(absolute, relative * max(|a|, |b|)), which is symmetric,
 * so a group agreeing with its first member does not depend on who came first. Infinities
 * and NaN only agree with themselves.
 */
export function outputsAgree(a: unknown, b: unknown, comparator: Comparator): boolean {
  return comparator.kind === "exact" ? same(a, b, 0, 0) : same(a, b, comparator.relative, comparator.absolute);
}

function same(a: unknown, b: unknown, relative: number, absolute: number): boolean {
  if (a === b) return true;
  const ta = typeof a;
  if (ta !== typeof b) return false;
  if (ta === "number") return numbersAgree(a as number, b as number, relative, absolute);
  if (ta === "bigint") return a === b;
  if (ta !== "object" || a === null || b === null) return false;
  const aArr = Array.isArray(a);
  if (aArr !== Array.isArray(b)) return false;
  if (aArr) {
    const xs = a as unknown[];
    const ys = b as unknown[];
    if (xs.length !== ys.length) return false;
    for (let i = 0; i < xs.length; i++) if (!same(xs[i], ys[i], relative, absolute)) return false;
    return true;
  }
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  const ob = b as Record<string, unknown>;
  const oa = a as Record<string, unknown>;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(ob, k)) return false;
    if (!same(oa[k], ob[k], relative, absolute)) return false;
  }
  return true;
}

function numbersAgree(a: number, b: number, relative: number, absolute: number): boolean {
  if (Object.is(a, b) || a === b) return true;
  if (!Number.isFinite(a) || !Number.isFinite(b)) return false;
  return Math.abs(a - b) <= Math.max(absolute, relative * Math.max(Math.abs(a), Math.abs(b)));
}
