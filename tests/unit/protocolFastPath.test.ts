import { describe, expect, it } from "vitest";
import { clientMessageSchema, parseClientMessage } from "../../worker/protocol/messages";
import { seededRandom } from "../helpers/random";

// parseClientMessage checks `results` frames by hand for speed; it must accept exactly what
// the schema accepts, in the same shape, and refuse the rest with the schema's reason.

const values = [undefined, null, 0, -1, 1.5, "", "x", "a".repeat(201), true, [], {}, { inside: 3, samples: 5 }, Infinity, 86_400_000, 86_400_001, 3e9];
const pick = <T>(random: () => number, xs: T[]) => xs[Math.floor(random() * xs.length)];

function randomItem(random: () => number): unknown {
  const item: Record<string, unknown> = {};
  for (const key of ["taskId", "output", "ms", "error", "extra"]) {
    if (random() < 0.6) item[key] = key === "taskId" && random() < 0.7 ? `t${Math.floor(random() * 100)}` : pick(random, values);
  }
  return random() < 0.05 ? pick(random, values) : item;
}

describe("results frames", () => {
  it("parse as the schema parses them, for 5,000 random frames good and bad", () => {
    const random = seededRandom(7);
    let accepted = 0;
    for (let n = 0; n < 5000; n++) {
      const frame = { type: "results", results: Array.from({ length: Math.floor(random() * 4) }, () => randomItem(random)) };
      const text = JSON.stringify(frame);
      const fast = parseClientMessage(text);
      const schema = clientMessageSchema.safeParse(JSON.parse(text));
      expect(fast.ok, text).toBe(schema.success);
      if (fast.ok && schema.success) {
        accepted++;
        expect(fast.msg, text).toEqual(schema.data);
      }
    }
    // Both kinds were seen.
    expect(accepted).toBeGreaterThan(100);
    expect(accepted).toBeLessThan(4900);
  });

  it("refuses with the schema's reason", () => {
    expect(parseClientMessage(JSON.stringify({ type: "results", results: [] }))).toMatchObject({ ok: false, error: expect.stringMatching(/^invalid message: results/) });
    expect(parseClientMessage(JSON.stringify({ type: "results", results: [{ taskId: "", output: 1 }] }))).toMatchObject({ ok: false });
  });

  it("refuses a task time it could not store, saying so (3e9 ms once stopped every PostgreSQL commit)", () => {
    const frame = (ms: string) => `{"type":"results","results":[{"taskId":"t1","output":1,"ms":2.5},{"taskId":"t2","output":1,"ms":${ms}}]}`;
    for (const ms of ["3e9", "86400001", "1e999", "-1", "\"5\""]) {
      expect(parseClientMessage(frame(ms)), ms).toEqual({ ok: false, error: "invalid message: results.1.ms must be a number of milliseconds from 0 to 86400000" });
    }
    expect(parseClientMessage(frame("86400000"))).toMatchObject({ ok: true, msg: { results: [{ ms: 2.5 }, { ms: 86_400_000 }] } });
  });
});
