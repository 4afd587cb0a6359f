import { describe, expect, it } from "vitest";
import { canonicalJson, canonicalJsonIterative } from "../../server/coordinator/digest";
import { seededRandom } from "../helpers/random";

// canonicalJson must not overflow the stack whatever it is given (results read back from the
// database may predate the bounds on outputs), and its text must not change for any value.

const reference = (v: unknown) =>
  JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );

const keys = ["a", "b", "z", "10", "2", "0", "é", "__proto__", "", "Aa", "a\u0000", "\ud800"];
const scalars: unknown[] = [null, true, false, 0, -0, 1.5, -1e308, 1e-7, 2 ** 53, Infinity, NaN, "", "x", 'q"uote\\', "\u2028\ud800", undefined, () => 1];

function randomValue(random: () => number, depth: number): unknown {
  const r = random();
  if (depth > 5 || r < 0.45) return scalars[Math.floor(random() * scalars.length)];
  if (r < 0.7) return Array.from({ length: Math.floor(random() * 5) }, () => randomValue(random, depth + 1));
  if (r < 0.75) return new Date(Math.floor(random() * 2e12));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(random() * 5); i > 0; i--) {
    // defineProperty: an own "__proto__" key as JSON.parse makes it.
    Object.defineProperty(o, keys[Math.floor(random() * keys.length)], { value: randomValue(random, depth + 1), enumerable: true, configurable: true, writable: true });
  }
  return o;
}

describe("canonicalJson on values of any depth", () => {
  it("builds, without recursion, the same text as the native serialisation for 5,000 random values", () => {
    const random = seededRandom(11);
    for (let n = 0; n < 5000; n++) {
      const v = randomValue(random, 0);
      const expected = reference(v);
      expect(canonicalJsonIterative(v), expected).toBe(expected);
      expect(canonicalJson(v), expected).toBe(expected);
    }
  });

  it("serialises arrays and objects nested 20,000 and 100,000 levels deep instead of overflowing", () => {
    for (const depth of [20_000, 100_000]) {
      const arrays = JSON.parse("[".repeat(depth) + "]".repeat(depth)) as unknown;
      expect(() => JSON.stringify(arrays)).toThrow(RangeError);
      // (Compared as booleans: a failure would print megabytes.)
      expect(canonicalJson(arrays) === "[".repeat(depth) + "]".repeat(depth)).toBe(true);
      // Keys out of order at every level: sorted at every level.
      const objects = JSON.parse('{"b":1,"a":'.repeat(depth) + "null" + "}".repeat(depth)) as unknown;
      expect(canonicalJson(objects) === '{"a":'.repeat(depth) + "null" + ',"b":1}'.repeat(depth)).toBe(true);
    }
  });

  it("gives the same text on both sides of the native depth limit, and when the native serialiser runs out of stack", () => {
    for (const depth of [998, 999, 1000, 1001, 3000, 6000]) {
      // Arrays down to an object whose keys are out of order.
      const text = "[".repeat(depth) + '{"y":2,"x":1}' + "]".repeat(depth);
      const sorted = "[".repeat(depth) + '{"x":1,"y":2}' + "]".repeat(depth);
      expect(canonicalJson(JSON.parse(text)) === sorted, `depth ${depth}`).toBe(true);
      // Out of order first, so the order check stops there and JSON.stringify meets the depth.
      const late = JSON.parse(`[{"b":1,"a":0},${text}]`) as unknown;
      expect(canonicalJson(late) === `[{"a":0,"b":1},${sorted}]`, `late, depth ${depth}`).toBe(true);
    }
  });

  it("refuses cycles as JSON.stringify does, rather than looping", () => {
    const a: unknown[] = [];
    a.push([a]);
    const o: Record<string, unknown> = { b: 1 };
    o.a = { c: o };
    for (const v of [a, o]) expect(() => canonicalJsonIterative(v)).toThrow(TypeError);
  });
});
