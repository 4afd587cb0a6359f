import { describe, expect, it } from "vitest";
import { oneBigAtATime } from "../../server/services/jobs/merge";

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
