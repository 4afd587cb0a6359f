import type { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { canonicalJson, digestOf } from "../../server/coordinator/digest";
import { OutputDigests, THREAD_DIGEST_BYTES } from "../../server/coordinator/outputDigests";
import { JSON_MAX_DEPTH } from "../../worker/protocol/jsonBounds";
import { seededRandom } from "../helpers/random";

let digests: OutputDigests | undefined;
afterEach(async () => {
  await digests?.close();
  digests = undefined;
});

/** A JSON value of random shape: objects with their keys out of order, escapes, -0, exponents. */
function randomValue(rand: () => number, depth = 0): unknown {
  const pick = Math.floor(rand() * (depth > 4 ? 4 : 7));
  if (pick === 0) return Math.round((rand() - 0.5) * 1e6) / 1e3;
  if (pick === 1) return [1e308, -0, 5e-324, 123456789012345680000][Math.floor(rand() * 4)];
  if (pick === 2) return ["", "é\u2028\"\\\n", "\ud83d\ude00", "plain"][Math.floor(rand() * 4)];
  if (pick === 3) return [true, false, null][Math.floor(rand() * 3)];
  if (pick === 4) return Array.from({ length: Math.floor(rand() * 6) }, () => randomValue(rand, depth + 1));
  const keys = ["zeta", "a", "10", "2", "Ä", "_", "b"].sort(() => rand() - 0.5).slice(0, 1 + Math.floor(rand() * 6));
  return Object.fromEntries(keys.map((k) => [k, randomValue(rand, depth + 1)]));
}

/** What the loop would compute for each result of the frame. */
function onTheLoop(raw: string) {
  return (JSON.parse(raw) as { results: Array<{ output?: unknown }> }).results.map((r) => {
    if (!("output" in r)) return null;
    const json = canonicalJson(r.output);
    return { json, digest: digestOf(json) };
  });
}

const deep = (n: number) => "[".repeat(n) + "]".repeat(n);

describe("OutputDigests", () => {
  it("gives each output of a frame the canonical text and digest the loop would compute", async () => {
    digests = new OutputDigests();
    const rand = seededRandom(7);
    for (let frame = 0; frame < 20; frame++) {
      const results = Array.from({ length: 1 + Math.floor(rand() * 8) }, (_, i) =>
        rand() < 0.2 ? { taskId: `t${i}`, error: "boom" } : { taskId: `t${i}`, output: randomValue(rand), ms: 3 });
      const raw = JSON.stringify({ type: "results", results });
      expect(await digests.digests(raw)).toEqual({ texts: onTheLoop(raw), shallow: true });
    }
    // A deep output: the loop refuses the frame unread, told it is not shallow; the thread does not fail on it.
    const raw = `{"type":"results","results":[{"taskId":"a","output":${deep(5000)}},{"taskId":"b","output":{"b":1,"a":2}}]}`;
    expect(await digests.digests(raw)).toEqual({ texts: onTheLoop(raw), shallow: false });
    // The frame's own three levels around the output, and one more: what parseClientMessage allows.
    const nested = (n: number) => `{"type":"results","results":[{"taskId":"a","output":${deep(n)}}]}`;
    expect((await digests.digests(nested(JSON_MAX_DEPTH + 1))).shallow).toBe(true);
    expect((await digests.digests(nested(JSON_MAX_DEPTH + 2))).shallow).toBe(false);
  });

  it("answers null for what is not a results frame, and for text that is not JSON", async () => {
    digests = new OutputDigests();
    expect((await digests.digests('{"type":"load","cpu":0.5,"inFlight":1}')).texts).toBeNull();
    expect((await digests.digests('{"type":"results","results":[{"taskId":"a","output":1}')).texts).toBeNull();
  });

  it("answers null for the frames out when its thread dies, and starts another for the next", async () => {
    digests = new OutputDigests();
    expect((await digests.digests('{"type":"results","results":[{"taskId":"a","output":1}]}')).texts).toEqual([{ json: "1", digest: digestOf("1") }]);
    const thread = await (digests as unknown as { worker: Promise<Worker> }).worker;
    const out = digests.digests(`{"type":"results","results":[{"taskId":"a","output":"${"x".repeat(1 << 20)}"}]}`);
    await thread.terminate();
    expect(await out).toEqual({ texts: null, shallow: false });
    expect((await digests.digests('{"type":"results","results":[{"taskId":"a","output":{"b":1,"a":2}}]}')).texts).toEqual([{ json: '{"a":2,"b":1}', digest: digestOf('{"a":2,"b":1}') }]);
  });

  it("takes frames from THREAD_DIGEST_BYTES on, eight at a time, and none once closed", async () => {
    digests = new OutputDigests();
    expect(digests.wants(THREAD_DIGEST_BYTES - 1)).toBe(false);
    expect(digests.wants(THREAD_DIGEST_BYTES)).toBe(true);
    const raw = `{"type":"results","results":[{"taskId":"a","output":"${"y".repeat(THREAD_DIGEST_BYTES)}"}]}`;
    const out = Array.from({ length: 8 }, () => digests!.digests(raw));
    expect(digests.wants(THREAD_DIGEST_BYTES)).toBe(false);
    expect(new Set((await Promise.all(out)).map((d) => d.texts?.[0]?.digest)).size).toBe(1);
    expect(digests.wants(THREAD_DIGEST_BYTES)).toBe(true);
    const pending = digests.digests(raw);
    await digests.close();
    expect((await pending).texts).toBeNull();
    expect(digests.wants(THREAD_DIGEST_BYTES)).toBe(false);
  });
});
