import { afterEach, describe, expect, it, vi } from "vitest";
import { CALC_MAX_DEPTH, CALC_MAX_LENGTH, CalcError, checkExpression, evaluate } from "../../worker/interactive/calc";
import { runInteractive } from "../../worker/interactive";
import { answerInteractive, appendLog, INTERACTIVE_LOG_LIMIT, LoadReporter, type InteractiveLogEntry } from "../../worker/interactive/volunteer";
import type { LoadReport } from "../../worker/protocol/messages";

const value = (src: string) => evaluate(src).value;

/** The CalcError `fn` throws (fails the test when it does not throw one). */
function calcError(fn: () => unknown): CalcError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CalcError) return e;
    throw e;
  }
  throw new Error("expected a CalcError");
}

describe("calculator: values", () => {
  it("evaluates the issue's example and lists the operations in order", () => {
    expect(evaluate("2*(3+4)/5")).toEqual({ value: 2.8, ops: ["3 + 4 = 7", "2 * 7 = 14", "14 / 5 = 2.8"] });
  });

  it("respects precedence: * / % before + -, ^ before everything", () => {
    expect(value("1+2*3")).toBe(7);
    expect(value("(1+2)*3")).toBe(9);
    expect(value("10-4/2")).toBe(8);
    expect(value("7%4+1")).toBe(4);
    expect(value("2*3^2")).toBe(18);
    expect(value("1+2^3*2")).toBe(17);
  });

  it("is left-associative for - / % and right-associative for ^", () => {
    expect(value("10-3-2")).toBe(5);
    expect(value("64/4/2")).toBe(8);
    expect(value("100%7%3")).toBe(2);
    expect(value("2^3^2")).toBe(512);
    expect(evaluate("2^3^2").ops).toEqual(["3 ^ 2 = 9", "2 ^ 9 = 512"]);
  });

  it("handles unary minus (and plus) the usual way", () => {
    expect(value("-3")).toBe(-3);
    expect(value("--3")).toBe(3);
    expect(value("-2^2")).toBe(-4);
    expect(value("(-2)^2")).toBe(4);
    expect(value("2^-1")).toBe(0.5);
    expect(value("3--2")).toBe(5);
    expect(value("4*-2")).toBe(-8);
    expect(value("+5-+2")).toBe(3);
    expect(value("-(1+2)*2")).toBe(-6);
    expect(evaluate("-(1+2)").ops).toEqual(["1 + 2 = 3", "-(3) = -3"]);
  });

  it("reads decimals and exponents, with whitespace anywhere", () => {
    expect(value("0.5+.25")).toBe(0.75);
    expect(value("5.")).toBe(5);
    expect(value("1.5e3")).toBe(1500);
    expect(value("2E-2")).toBe(0.02);
    expect(value("1e+2 / 4")).toBe(25);
    expect(value("  ( 1 +\t2 )\n* 3 ")).toBe(9);
    expect(value("42")).toBe(42);
    expect(evaluate("42").ops).toEqual([]);
  });
});

describe("calculator: errors", () => {
  it.each([
    ["2*(3+4))/5", "malformed expression: unexpected ')' at column 8"],
    ["(1+2))", "malformed expression: unexpected ')' at column 6"],
    ["2+", "malformed expression: unexpected end of expression at column 3"],
    ["2*(3+4", "malformed expression: expected ')' to close the '(' at column 3, found end of expression at column 7"],
    ["*3", "malformed expression: unexpected '*' at column 1"],
    ["2 3", "malformed expression: unexpected '3' at column 3"],
    ["()", "malformed expression: unexpected ')' at column 2"],
    ["2+x", "malformed expression: unexpected 'x' at column 3"],
    ["1e", "malformed expression: bad number '1e' at column 1 (the exponent has no digits)"],
    ["1.2.3", "malformed expression: unexpected '.3' at column 4"],
    ["", "malformed expression: the expression is empty"],
    ["   ", "malformed expression: the expression is empty"],
    ["1e400", "malformed expression: number '1e400' at column 1 is too large"],
    ["Math.PI", "malformed expression: unexpected 'M' at column 1"],
  ])("%j → %s", (src, message) => {
    const e = calcError(() => evaluate(src));
    expect(e.kind).toBe("syntax");
    expect(e.message).toBe(message);
    expect(checkExpression(src)).toBe(message);
  });

  it("reports division by zero with the operation, after the syntax check passed", () => {
    expect(checkExpression("1/(2-2)")).toBeNull();
    const e = calcError(() => evaluate("1/(2-2)"));
    expect(e.kind).toBe("math");
    expect(e.message).toBe("division by zero in 1 / 0");
    expect(e.ops).toEqual(["2 - 2 = 0"]);
    expect(calcError(() => evaluate("4 / 0")).message).toBe("division by zero in 4 / 0");
    expect(calcError(() => evaluate("5 % 0")).message).toBe("division by zero in 5 % 0");
    expect(calcError(() => evaluate("0^-1")).message).toMatch(/^division by zero in 0 \^ -1/);
  });

  it("turns overflow and non-real results into errors, never Infinity or NaN", () => {
    expect(calcError(() => evaluate("10^400")).message).toBe("overflow in 10 ^ 400 (the result is too large)");
    expect(calcError(() => evaluate("1e300*1e300")).message).toMatch(/^overflow in 1e\+300 \* 1e\+300/);
    expect(calcError(() => evaluate("(-8)^0.5")).message).toBe("-8 ^ 0.5 is not a real number");
  });

  it("limits length and nesting, without overflowing the stack", () => {
    const long = "1+".repeat(CALC_MAX_LENGTH) + "1";
    expect(calcError(() => evaluate(long)).message).toBe(`expression too long (${long.length} characters; the limit is ${CALC_MAX_LENGTH})`);
    const ok = "(".repeat(CALC_MAX_DEPTH - 1) + "1" + ")".repeat(CALC_MAX_DEPTH - 1);
    expect(value(ok)).toBe(1);
    const deep = "(".repeat(CALC_MAX_DEPTH + 1) + "1" + ")".repeat(CALC_MAX_DEPTH + 1);
    expect(calcError(() => evaluate(deep)).message).toMatch(new RegExp(`^malformed expression: nested more than ${CALC_MAX_DEPTH} levels deep at column \\d+$`));
    expect(calcError(() => evaluate("-".repeat(500) + "1")).message).toMatch(/nested more than/);
    expect(calcError(() => evaluate("2^".repeat(300) + "1")).message).toMatch(/nested more than/);
    // A long flat chain is fine: it is wide, not deep.
    expect(value("1+".repeat(499) + "1")).toBe(500);
  });

  it("never runs the text as code", () => {
    for (const src of ["constructor", "process.exit(1)", "(()=>1)()", "1;2", "[1]", "'1'"]) {
      expect(calcError(() => evaluate(src)).kind).toBe("syntax");
    }
  });
});

describe("interactive kernels on the volunteer", () => {
  it("runs calc by name and refuses unknown kernels or bad input", () => {
    expect(runInteractive("calc", { expression: "1+1" })).toEqual({ value: 2, ops: ["1 + 1 = 2"] });
    expect(() => runInteractive("eval", { expression: "1" })).toThrow(/unknown interactive kernel "eval"/);
    expect(() => runInteractive("calc", { expr: "1" })).toThrow(/invalid calc input/);
  });

  it("answers with the value and ops, or the error, and logs a readable line", () => {
    const ok = answerInteractive({ type: "interactive", id: "a1", kernel: "calc", input: { expression: "2*(3+4)/5" } });
    expect(ok.reply).toEqual({ type: "interactive-result", id: "a1", value: 2.8, ops: ["3 + 4 = 7", "2 * 7 = 14", "14 / 5 = 2.8"] });
    expect(ok.entry.line).toBe("calc 2*(3+4)/5 = 2.8: 3 + 4 = 7, 2 * 7 = 14, 14 / 5 = 2.8");
    expect(ok.entry).toMatchObject({ kernel: "calc", expression: "2*(3+4)/5", value: 2.8 });
    const bad = answerInteractive({ type: "interactive", id: "a2", kernel: "calc", input: { expression: "1/0" } });
    expect(bad.reply).toEqual({ type: "interactive-result", id: "a2", error: "division by zero in 1 / 0" });
    expect(bad.entry.line).toBe("calc 1/0: division by zero in 1 / 0");
  });

  it("keeps the newest entries of the log, bounded", () => {
    let log: InteractiveLogEntry[] = [];
    for (let i = 0; i < INTERACTIVE_LOG_LIMIT + 50; i++) {
      log = appendLog(log, { at: i, kernel: "calc", expression: String(i), value: i, ops: [], line: "" });
    }
    expect(log).toHaveLength(INTERACTIVE_LOG_LIMIT);
    expect(log[0].expression).toBe("50");
    expect(log.at(-1)!.expression).toBe(String(INTERACTIVE_LOG_LIMIT + 49));
  });
});

describe("load reports", () => {
  afterEach(() => vi.useRealTimers());

  function reporter() {
    vi.useFakeTimers();
    const load = { cpu: 0, inFlight: 0 };
    const sent: LoadReport[] = [];
    const r = new LoadReporter({ measure: () => load, send: (m) => sent.push(m), intervalMs: 1500, heartbeatMs: 10_000, minGapMs: 250 });
    return { r, load, sent };
  }

  it("reports at once on start, then every interval only when the load moved, with a heartbeat", () => {
    const { r, load, sent } = reporter();
    r.start();
    expect(sent).toEqual([{ type: "load", cpu: 0, inFlight: 0 }]);
    vi.advanceTimersByTime(1500);
    expect(sent).toHaveLength(1); // unchanged
    load.cpu = 0.1;
    vi.advanceTimersByTime(1500);
    expect(sent.at(-1)).toEqual({ type: "load", cpu: 0.1, inFlight: 0 });
    const n = sent.length;
    vi.advanceTimersByTime(9000);
    expect(sent).toHaveLength(n);
    vi.advanceTimersByTime(1500);
    expect(sent).toHaveLength(n + 1); // heartbeat after 10 s
    r.stop();
    vi.advanceTimersByTime(60_000);
    expect(sent).toHaveLength(n + 1);
  });

  it("reports big changes at once, but never more often than the minimum gap", () => {
    const { r, load, sent } = reporter();
    r.start();
    load.cpu = 0.1;
    r.changed();
    expect(sent).toHaveLength(1); // a small change waits for the interval
    vi.advanceTimersByTime(300);
    load.cpu = 1;
    r.changed();
    expect(sent.at(-1)).toEqual({ type: "load", cpu: 1, inFlight: 0 });
    load.cpu = 0;
    load.inFlight = 8;
    r.changed();
    expect(sent).toHaveLength(2); // within 250 ms of the last report
    vi.advanceTimersByTime(250);
    r.changed();
    expect(sent.at(-1)).toEqual({ type: "load", cpu: 0, inFlight: 8 });
  });

  it("clamps what it measures into what the protocol accepts", () => {
    const { r, load, sent } = reporter();
    load.cpu = 3.7;
    load.inFlight = -2;
    r.start();
    expect(sent[0]).toEqual({ type: "load", cpu: 1, inFlight: 0 });
    load.cpu = Number.NaN;
    vi.advanceTimersByTime(1500);
    expect(sent.at(-1)).toEqual({ type: "load", cpu: 0, inFlight: 0 });
    r.stop();
  });
});
