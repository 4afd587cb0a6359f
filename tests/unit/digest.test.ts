import { describe, expect, it } from "vitest";
import { canonicalJson, digestOf, outputDigest } from "../../server/coordinator/digest";

describe("canonicalJson", () => {
  it("sorts object keys at every depth, and leaves values that are already in order as JSON.stringify has them", () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}');
    expect(canonicalJson({ inside: 785, samples: 1000 })).toBe('{"inside":785,"samples":1000}');
    expect(canonicalJson([1, 2.5, "x", true, null])).toBe('[1,2.5,"x",true,null]');
    expect(canonicalJson(42)).toBe("42");
    expect(canonicalJson("s")).toBe('"s"');
  });

  it("gives equal values the same text whatever the key order, including integer-like keys and undefined members", () => {
    const a = { "10": 1, "2": 2, x: { q: undefined, p: 1 } };
    const b = { x: { p: 1 }, "2": 2, "10": 1 };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(JSON.parse(canonicalJson(a))).toEqual({ "10": 1, "2": 2, x: { p: 1 } });
  });

  it("leaves toJSON to decide (dates)", () => {
    expect(canonicalJson({ at: new Date(0) })).toBe('{"at":"1970-01-01T00:00:00.000Z"}');
  });
});

describe("outputDigest", () => {
  it("is the digest of the canonical text, the same for reordered keys and different for different values", () => {
    expect(outputDigest({ b: 2, a: 1 })).toBe(outputDigest({ a: 1, b: 2 }));
    expect(outputDigest({ a: 1, b: 2 })).toBe(digestOf('{"a":1,"b":2}'));
    expect(outputDigest({ a: 1, b: 3 })).not.toBe(outputDigest({ a: 1, b: 2 }));
  });
});
