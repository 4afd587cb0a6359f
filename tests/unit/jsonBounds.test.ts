import { describe, expect, it } from "vitest";
import { checkJsonBounds, CONSUMER_INPUT_LIMITS, JSON_MAX_DEPTH, VOLUNTEER_OUTPUT_LIMITS, type JsonLimits } from "../../worker/protocol/jsonBounds";

const small: JsonLimits = { maxDepth: 4, maxNodes: 20, maxStringLength: 10 };
const nestedArrays = (depth: number) => JSON.parse("[".repeat(depth) + "]".repeat(depth)) as unknown;
const nestedObjects = (depth: number) => JSON.parse('{"a":'.repeat(depth) + "1" + "}".repeat(depth)) as unknown;

describe("checkJsonBounds", () => {
  it("accepts ordinary values", () => {
    for (const v of [null, true, 0, -1.5, 1e308, -1e308, Number.MIN_VALUE, "", "text", [], {}, { inside: 785, samples: 1000 }, [1, [2, [3]], { a: null }], { constructor: 1, prototype: 2, toString: "x" }]) {
      expect(checkJsonBounds(v, VOLUNTEER_OUTPUT_LIMITS), JSON.stringify(v)).toBeNull();
      expect(checkJsonBounds(v, CONSUMER_INPUT_LIMITS), JSON.stringify(v)).toBeNull();
    }
    expect(checkJsonBounds(undefined, small)).toBeNull();
  });

  it("counts depth as containers nested in one another, for arrays and objects alike", () => {
    expect(JSON_MAX_DEPTH).toBe(64);
    for (const nested of [nestedArrays, nestedObjects]) {
      expect(checkJsonBounds(nested(64), VOLUNTEER_OUTPUT_LIMITS)).toBeNull();
      expect(checkJsonBounds(nested(65), VOLUNTEER_OUTPUT_LIMITS)).toBe("is nested more than 64 levels deep");
      expect(checkJsonBounds(nested(4), small)).toBeNull();
      expect(checkJsonBounds(nested(5), small)).toBe("is nested more than 4 levels deep");
    }
    // Mixed, and deep only in the last member.
    expect(checkJsonBounds([1, { a: [2, [3]] }], small)).toBeNull();
    expect(checkJsonBounds([1, 2, { a: [2, [{}]] }], small)).toBe("is nested more than 4 levels deep");
  });

  it("refuses values nested 100,000 levels deep without overflowing the stack, and fast", () => {
    // JSON.parse builds these without complaint; JSON.stringify on them throws RangeError.
    for (const nested of [nestedArrays, nestedObjects]) {
      const v = nested(100_000);
      expect(() => JSON.stringify(v)).toThrow(RangeError);
      const t0 = performance.now();
      expect(checkJsonBounds(v, VOLUNTEER_OUTPUT_LIMITS)).toBe("is nested more than 64 levels deep");
      expect(checkJsonBounds(v, { maxDepth: 1e9, maxNodes: 1e9, maxStringLength: 1e9 })).toBeNull();
      expect(performance.now() - t0).toBeLessThan(1000);
    }
  });

  it("refuses more values than maxNodes, counting members of arrays and objects", () => {
    expect(checkJsonBounds(new Array(19).fill(0), small)).toBeNull();
    expect(checkJsonBounds(new Array(20).fill(0), small)).toBe("has more than 20 values");
    expect(checkJsonBounds(Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])), small)).toBe("has more than 20 values");
    // The top array, its 5 members and their 14: 20 in all, then 21.
    expect(checkJsonBounds([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [13, 14]], small)).toBeNull();
    expect(checkJsonBounds([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [13, 14, 15]], small)).toBe("has more than 20 values");
    expect(checkJsonBounds(new Array(1_000_001).fill(0), VOLUNTEER_OUTPUT_LIMITS)).toBe("has more than 1,000,000 values");
    expect(checkJsonBounds(new Array(250_001).fill(null), CONSUMER_INPUT_LIMITS)).toBe("has more than 250,000 values");
  });

  it("refuses long strings, as values and as keys, at any depth", () => {
    expect(checkJsonBounds("x".repeat(10), small)).toBeNull();
    expect(checkJsonBounds("x".repeat(11), small)).toBe("has a string longer than 10 characters");
    expect(checkJsonBounds([["x".repeat(11)]], small)).toBe("has a string longer than 10 characters");
    expect(checkJsonBounds({ a: { b: "x".repeat(11) } }, small)).toBe("has a string longer than 10 characters");
    expect(checkJsonBounds({ ["k".repeat(11)]: 1 }, small)).toBe("has a key longer than 10 characters");
    expect(checkJsonBounds("x".repeat(3 * 1024 * 1024), VOLUNTEER_OUTPUT_LIMITS)).toBeNull();
    expect(checkJsonBounds(["x".repeat(256 * 1024 + 1)], CONSUMER_INPUT_LIMITS)).toBe("has a string longer than 262,144 characters");
  });

  it("refuses numbers that are not finite (JSON.parse reads 1e999 as Infinity)", () => {
    expect(checkJsonBounds(JSON.parse("1e999"), small)).toBe("has a number out of range (Infinity)");
    expect(checkJsonBounds(JSON.parse("[1, -1e999]"), small)).toBe("has a number out of range (-Infinity)");
    expect(checkJsonBounds(JSON.parse('{"a":{"b":1e999}}'), small)).toBe("has a number out of range (Infinity)");
    expect(checkJsonBounds({ a: NaN }, small)).toBe("has a number out of range (NaN)");
    expect(checkJsonBounds(JSON.parse("[1e308, -1e308, 5e-324]"), small)).toBeNull();
  });

  it('refuses "__proto__" keys, which JSON.parse makes own properties and a spread would not', () => {
    const parsed = JSON.parse('{"a":1,"__proto__":{"polluted":true}}') as Record<string, unknown>;
    // Harmless as JSON.parse leaves it: an own property, the prototype untouched...
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype);
    expect(Object.keys(parsed)).toEqual(["a", "__proto__"]);
    // ...but Object.assign into a plain object sets that object's prototype instead.
    expect((Object.assign({}, parsed) as { polluted?: boolean }).polluted).toBe(true);
    expect(checkJsonBounds(parsed, VOLUNTEER_OUTPUT_LIMITS)).toBe('has a key named "__proto__"');
    expect(checkJsonBounds(JSON.parse('[{"x":[{"__proto__":1}]}]'), CONSUMER_INPUT_LIMITS)).toBe('has a key named "__proto__"');
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });

  it("ends on cyclic values, and reports the same after a refusal as before", () => {
    const cyclic: unknown[] = [];
    cyclic.push(cyclic);
    expect(checkJsonBounds(cyclic, small)).toBe("is nested more than 4 levels deep");
    const wideCycle: Record<string, unknown> = {};
    for (let i = 0; i < 3; i++) wideCycle[`k${i}`] = wideCycle;
    expect(checkJsonBounds(wideCycle, { ...small, maxDepth: 1000 })).toBe("has more than 20 values");
    // The shared stack was emptied by those refusals.
    expect(checkJsonBounds({ a: [1, 2], b: { c: [3] } }, small)).toBeNull();
  });

  it("stays correct when called again from inside a walk (a getter)", () => {
    const inner = nestedArrays(5);
    let innerVerdict: string | null | undefined;
    const outer = [[1], { get g() { innerVerdict = checkJsonBounds(inner, small); return [2]; } }, [[3]]];
    expect(checkJsonBounds(outer, small)).toBeNull();
    expect(innerVerdict).toBe("is nested more than 4 levels deep");
    expect(checkJsonBounds([outer, [[[[0]]]]], small)).toBe("is nested more than 4 levels deep");
  });
});
