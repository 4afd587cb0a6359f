import { describe, expect, it } from "vitest";
import { resultFrames } from "../../worker/client/volunteerClient";

const bytes = (s: string) => Buffer.byteLength(s);

describe("resultFrames", () => {
  it("sends the results finished together in one frame when they fit", () => {
    const results = [{ taskId: "a", output: 1, ms: 2 }, { taskId: "b", error: "boom" }];
    const frames = resultFrames(results, 4096);
    expect(frames).toHaveLength(1);
    expect(JSON.parse(frames[0])).toEqual({ type: "results", results });
  });

  it("splits them into frames of at most the server's size, counting UTF-8 bytes, in order", () => {
    const results = Array.from({ length: 7 }, (_, i) => ({ taskId: `t${i}`, output: (i % 2 ? "é" : "e").repeat(300), ms: 1 }));
    const max = 1000;
    const frames = resultFrames(results, max);
    expect(frames.length).toBeGreaterThan(2);
    for (const f of frames) expect(bytes(f)).toBeLessThanOrEqual(max);
    expect(frames.flatMap((f) => JSON.parse(f).results)).toEqual(results);
  });

  it("turns an output no frame can carry into its task's error, and sends the rest", () => {
    const frames = resultFrames([{ taskId: "small", output: [1, 2] }, { taskId: "huge", output: "x".repeat(5000), ms: 3 }], 1024);
    for (const f of frames) expect(bytes(f)).toBeLessThanOrEqual(1024);
    expect(frames.flatMap((f) => JSON.parse(f).results)).toEqual([
      { taskId: "small", output: [1, 2] },
      { taskId: "huge", error: "output is 5 KiB as JSON, more than the 1 KiB a frame to this server may carry" },
    ]);
  });
});
