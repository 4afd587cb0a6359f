import { describe, expect, it } from "vitest";
import { BlobTokens } from "../../server/coordinator/blobTokens";

const A = "a".repeat(64);
const B = "b".repeat(64);
const HOUR = 3600_000;

describe("blob tokens", () => {
  it("open their own blob on any node with the same secret, and nothing else", () => {
    const one = new BlobTokens("the cluster's secret, 32 chars!!");
    const other = new BlobTokens("the cluster's secret, 32 chars!!");
    const stranger = new BlobTokens("someone else's secret, 32 chars!");
    const t = one.tokenFor(A);
    expect(other.verify(A, t)).toBe(true);
    expect(other.verify(B, t)).toBe(false);
    expect(stranger.verify(A, t)).toBe(false);
    // The same blob's token is made once an hour, not per task.
    expect(one.tokenFor(A)).toBe(t);
    for (const bad of [undefined, null, "", ".", "x", `.${t.split(".")[1]}`, `${t}x`, t.replace(/\.(.)/, (_, c: string) => `.${c === "A" ? "B" : "A"}`), `${t.split(".")[0]}.${"A".repeat(22)}`, "zzzzzzzzzzz." + t.split(".")[1], "1e9." + t.split(".")[1], "x".repeat(65)]) {
      expect(other.verify(A, bad), String(bad)).toBe(false);
    }
  });

  it("expire 25 to 26 hours after they were made, and a new hour makes new ones", () => {
    let now = 1_000 * HOUR + 10 * 60_000;
    const tokens = new BlobTokens("the cluster's secret, 32 chars!!", () => now);
    const t = tokens.tokenFor(A);
    now += 25 * HOUR;
    expect(tokens.verify(A, t)).toBe(true);
    expect(tokens.tokenFor(A)).not.toBe(t);
    now += HOUR;
    expect(tokens.verify(A, t)).toBe(false);
    // A later expiry written into an old token does not pass: the expiry is signed.
    const [expires, mac] = t.split(".");
    expect(tokens.verify(A, `${(parseInt(expires, 36) + 5).toString(36)}.${mac}`)).toBe(false);
  });
});
