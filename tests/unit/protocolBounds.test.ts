import { describe, expect, it } from "vitest";
import { parseClientMessage } from "../../worker/protocol/messages";

// An output over the bounds must not fail its frame (the other results stand) nor reach
// anything that walks it recursively: it becomes that task's error result.

const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
const results = (...items: string[]) => `{"type":"results","results":[${items.join(",")}]}`;

describe("results frames with outputs over the bounds", () => {
  it("turn each such output into its task's error and keep the rest of the frame", () => {
    const text = results(
      '{"taskId":"ok#1","output":{"inside":785,"samples":1000},"ms":3}',
      `{"taskId":"deep#1","output":${deep(65)},"ms":3}`,
      '{"taskId":"ok#2","output":1e308}',
      '{"taskId":"inf#1","output":1e999}',
      '{"taskId":"proto#1","output":{"__proto__":{"inside":1}}}',
      `{"taskId":"wide#1","output":[${"0,".repeat(1_000_000)}0]}`,
      '{"taskId":"err#1","error":"it failed"}',
    );
    const parsed = parseClientMessage(text);
    expect(parsed).toEqual({
      ok: true,
      msg: {
        type: "results",
        results: [
          { taskId: "ok#1", output: { inside: 785, samples: 1000 }, ms: 3 },
          { taskId: "deep#1", error: "output is nested more than 64 levels deep" },
          { taskId: "ok#2", output: 1e308 },
          { taskId: "inf#1", error: "output has a number out of range (Infinity)" },
          { taskId: "proto#1", error: 'output has a key named "__proto__"' },
          { taskId: "wide#1", error: "output has more than 1,000,000 values" },
          { taskId: "err#1", error: "it failed" },
        ],
      },
    });
  });

  it("refuse a frame nested past any output's bound plus its own levels, from its text, before parsing it", () => {
    // V8 parses 4 MB of brackets in about a second; the scan refuses it in microseconds.
    for (const text of [results(`{"taskId":"deep#1","output":${deep(2_000_000)}}`), `{"type":"interactive-result","id":"c1","value":${deep(20_000)}}`]) {
      expect(parseClientMessage(text)).toEqual({ ok: false, error: "message nests deeper than 68 levels" });
    }
    // Brackets inside strings are not levels.
    const inString = results(`{"taskId":"s#1","output":"${"[".repeat(5000)}\\\"${"{".repeat(5000)}"}`);
    expect(parseClientMessage(inString).ok).toBe(true);
  });

  it("let a 3 MB string through (a large image is one), bounded by the frame size instead", () => {
    const big = "A".repeat(3 * 1024 * 1024);
    const parsed = parseClientMessage(results(`{"taskId":"s#1","output":{"data":"${big}"}}`));
    expect(parsed.ok && parsed.msg.type === "results" && parsed.msg.results[0]).toEqual({ taskId: "s#1", output: { data: big } });
  });

  it("drop an interactive answer's value over the bounds, so it is asked of someone else", () => {
    const parsed = parseClientMessage(`{"type":"interactive-result","id":"c1","value":${deep(66)}}`);
    expect(parsed).toEqual({ ok: true, msg: { type: "interactive-result", id: "c1", value: undefined } });
    expect(parseClientMessage('{"type":"interactive-result","id":"c1","value":42,"ops":["6*7"]}')).toEqual({
      ok: true, msg: { type: "interactive-result", id: "c1", value: 42, ops: ["6*7"] },
    });
  });
});
