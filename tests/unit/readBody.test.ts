import { PassThrough } from "node:stream";
import type { IncomingMessage } from "node:http";
import { afterEach, describe, expect, it, vi } from "vitest";
import { BodyBusy, BodyTooSlow, readBody } from "../../server/http/body";

const request = (length?: number) => {
  const req = new PassThrough() as unknown as IncomingMessage & PassThrough;
  (req as { headers: Record<string, string> }).headers = length === undefined ? {} : { "content-length": String(length) };
  return req;
};

describe("readBody", () => {
  afterEach(() => vi.useRealTimers());

  it("cuts a body that comes slower than the minimum rate over a window of 10 s", async () => {
    vi.useFakeTimers();
    const req = request(1_000_000);
    const body = readBody(req, 2_000_000, { minRate: 1000 });
    const settled = body.catch((e: Error) => e);
    // 20 kB in the first 10 s: enough. 5 kB in the next: too slow.
    req.write(Buffer.alloc(20_000));
    await vi.advanceTimersByTimeAsync(10_000);
    req.write(Buffer.alloc(5_000));
    await vi.advanceTimersByTimeAsync(10_000);
    const e = await settled;
    expect(e).toBeInstanceOf(BodyTooSlow);
    expect((e as Error).message).toBe("The upload came slower than 1000 bytes a second; send it again on a better connection.");
  });

  it("reads a body that keeps its pace, and refuses one whose next chunk is not taken", async () => {
    const req = request();
    const body = readBody(req, 1000, { minRate: 1 });
    req.end(Buffer.from("hello"));
    expect((await body).toString()).toBe("hello");

    let held = 0;
    const busy = request();
    const refused = readBody(busy, 1000, { take: (n) => (held + n <= 8 ? ((held += n), true) : false) });
    busy.write(Buffer.from("12345"));
    busy.write(Buffer.from("67890"));
    await expect(refused).rejects.toBeInstanceOf(BodyBusy);
    expect(held).toBe(5);
  });
});
