import { describe, expect, it } from "vitest";
import { oneBigAtATime, THREAD_MERGE_BYTES } from "../../server/services/jobs/merge";
import { mergeValues, type ServerMerge } from "../../server/services/jobs/mergeValues";
import { mergeInThread } from "../../worker/sandbox/reduceOnServer";

describe("big merges", () => {
  it("run one at a time, and one aborted while it waits answers at once without running", async () => {
    let open = () => {};
    const gate = new Promise<void>((r) => (open = r));
    const order: string[] = [];
    const first = oneBigAtATime(async () => (await gate, order.push("first"), "first"), "stopped");
    const stop = new AbortController();
    const second = oneBigAtATime(async () => (order.push("second"), "second"), "stopped", stop.signal);
    const third = oneBigAtATime(async () => (order.push("third"), "third"), "stopped");
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([]);
    stop.abort();
    expect(await second).toBe("stopped");
    open();
    expect(await Promise.all([first, third])).toEqual(["first", "third"]);
    expect(order).toEqual(["first", "third"]);
  });
});

describe("merges the server computes", () => {
  const numbers = (seed: number, n: number) => JSON.stringify(Array.from({ length: n }, (_, i) => ((i * 7919 + seed * 104729) % 1000) / 7));

  it("give the same result in a sandbox thread as on the event loop: numeric, kernel and bytes", async () => {
    const texts = [1, 2, 3, 4, 5].map((s) => numbers(s, 200_000));
    expect(texts.join("").length).toBeGreaterThan(THREAD_MERGE_BYTES);
    for (const merge of ["mean", "median", "trimmed-mean"] as const) {
      const how = { kind: "numeric" as const, merge, trim: 0.2 };
      expect(await mergeInThread(how, texts, 512), merge).toBe(mergeValues(how, texts));
    }
    const pi: ServerMerge = { kind: "kernel", kernel: "pi", params: { samples: 2000 } };
    const piOutputs = [JSON.stringify({ inside: 780, samples: 1000 }), JSON.stringify({ inside: 790, samples: 1000 })];
    expect(await mergeInThread(pi, piOutputs, 64)).toBe(mergeValues(pi, piOutputs));
    const bytes: ServerMerge = { kind: "bytes" };
    const parts = ["AAEC", "AwQF"].map((b64) => JSON.stringify({ b64 }));
    expect(JSON.parse(await mergeInThread(bytes, parts, 64))).toEqual({ b64: Buffer.from([0, 1, 2, 3, 4, 5]).toString("base64") });
  });

  it("fail in the thread with the merge's own message", async () => {
    const how: ServerMerge = { kind: "numeric", merge: "mean", trim: 0.1 };
    await expect(mergeInThread(how, ["[1,2,3]", "[1,2]"], 64)).rejects.toThrow("output 1 has 2 numbers, output 0 has 3: they must all be as long");
  });
});
