// A safe calculator: a recursive-descent parser and evaluator (no eval, no Function), so the
// server can check an expression's syntax before routing it and a volunteer can evaluate it.
//
//   expr    := term (("+" | "-") term)*
//   term    := unary (("*" | "/" | "%") unary)*
//   unary   := ("-" | "+") unary | power          -2^2 = -(2^2) = -4
//   power   := primary ("^" unary)?               right-associative: 2^3^2 = 2^9; 2^-1 allowed
//   primary := number | "(" expr ")"
//   number  := digits ["." digits] [("e" | "E") ["+" | "-"] digits]   (also ".5", "5.")

export const CALC_MAX_LENGTH = 1000;
export const CALC_MAX_DEPTH = 100;

export type CalcErrorKind = "syntax" | "math";

/** A user-facing error: "syntax" ones are caught before routing, "math" ones while evaluating. */
export class CalcError extends Error {
  /** For "math" errors: the operations that ran before the failing one. */
  ops?: string[];
  constructor(
    readonly kind: CalcErrorKind,
    message: string,
  ) {
    super(message);
    this.name = "CalcError";
  }
}

export type CalcNode =
  | { type: "num"; value: number }
  | { type: "neg"; arg: CalcNode }
  | { type: "bin"; op: "+" | "-" | "*" | "/" | "%" | "^"; left: CalcNode; right: CalcNode };

export interface CalcResult {
  value: number;
  /** Every operation performed, in order: "3 + 4 = 7". */
  ops: string[];
}

interface Token {
  kind: "num" | "op" | "end";
  text: string;
  value?: number;
  /** 1-based column of the token's first character. */
  col: number;
}

const OPS = new Set(["+", "-", "*", "/", "%", "^", "(", ")"]);

function malformed(message: string): CalcError {
  return new CalcError("syntax", `malformed expression: ${message}`);
}

function describe(t: Token): string {
  return t.kind === "end" ? `end of expression at column ${t.col}` : `'${t.text}' at column ${t.col}`;
}

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
      continue;
    }
    if (OPS.has(c)) {
      tokens.push({ kind: "op", text: c, col: i + 1 });
      i++;
      continue;
    }
    if ((c >= "0" && c <= "9") || c === ".") {
      const m = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(src.slice(i, i + 400));
      if (!m) throw malformed(`unexpected '.' at column ${i + 1}`);
      let end = i + m[0].length;
      // "1e", "2e+" : an exponent marker with no digits is a typo, not "1" followed by "e".
      if (/^[eE]/.test(src.slice(end))) {
        const bad = /^[eE][+-]?/.exec(src.slice(end))![0];
        end += bad.length;
        throw malformed(`bad number '${src.slice(i, end)}' at column ${i + 1} (the exponent has no digits)`);
      }
      const value = Number(m[0]);
      if (!Number.isFinite(value)) throw malformed(`number '${m[0]}' at column ${i + 1} is too large`);
      tokens.push({ kind: "num", text: m[0], value, col: i + 1 });
      i = end;
      continue;
    }
    const ch = String.fromCodePoint(src.codePointAt(i)!);
    throw malformed(`unexpected '${ch}' at column ${i + 1}`);
  }
  tokens.push({ kind: "end", text: "", col: src.length + 1 });
  return tokens;
}

/** Parses an expression into a tree; throws a CalcError ("syntax") saying what and where. */
export function parseExpression(src: string): CalcNode {
  if (typeof src !== "string") throw malformed("the expression must be text");
  if (src.length > CALC_MAX_LENGTH) {
    throw new CalcError("syntax", `expression too long (${src.length} characters; the limit is ${CALC_MAX_LENGTH})`);
  }
  const tokens = tokenize(src);
  if (tokens.length === 1) throw malformed("the expression is empty");
  let pos = 0;
  let depth = 0;
  const peek = () => tokens[pos];
  const isOp = (t: Token, ...ops: string[]) => t.kind === "op" && ops.includes(t.text);

  function expr(): CalcNode {
    let left = term();
    while (isOp(peek(), "+", "-")) {
      const op = tokens[pos++].text as "+" | "-";
      left = { type: "bin", op, left, right: term() };
    }
    return left;
  }

  function term(): CalcNode {
    let left = unary();
    while (isOp(peek(), "*", "/", "%")) {
      const op = tokens[pos++].text as "*" | "/" | "%";
      left = { type: "bin", op, left, right: unary() };
    }
    return left;
  }

  // Every recursive path (parentheses, unary signs, powers) passes here, so the depth limit
  // here bounds the stack for any input.
  function unary(): CalcNode {
    if (++depth > CALC_MAX_DEPTH) throw malformed(`nested more than ${CALC_MAX_DEPTH} levels deep at column ${peek().col}`);
    try {
      const t = peek();
      if (isOp(t, "-")) {
        pos++;
        return { type: "neg", arg: unary() };
      }
      if (isOp(t, "+")) {
        pos++;
        return unary();
      }
      return power();
    } finally {
      depth--;
    }
  }

  function power(): CalcNode {
    const base = primary();
    if (isOp(peek(), "^")) {
      pos++;
      return { type: "bin", op: "^", left: base, right: unary() };
    }
    return base;
  }

  function primary(): CalcNode {
    const t = peek();
    if (t.kind === "num") {
      pos++;
      return { type: "num", value: t.value! };
    }
    if (isOp(t, "(")) {
      pos++;
      const inner = expr();
      const close = peek();
      if (!isOp(close, ")")) {
        throw malformed(`expected ')' to close the '(' at column ${t.col}, found ${describe(close)}`);
      }
      pos++;
      return inner;
    }
    throw malformed(`unexpected ${describe(t)}`);
  }

  const tree = expr();
  if (peek().kind !== "end") throw malformed(`unexpected ${describe(peek())}`);
  return tree;
}

/** Null when the expression parses, else the reason (what the server checks before routing). */
export function checkExpression(src: string): string | null {
  try {
    parseExpression(src);
    return null;
  } catch (e) {
    if (e instanceof CalcError) return e.message;
    throw e;
  }
}

/** Numbers as people write them: 2.8, -3, 1e+21. */
export function formatNumber(n: number): string {
  return Object.is(n, -0) ? "0" : String(n);
}

/** Evaluates a parsed tree, recording each operation; throws a CalcError ("math"). */
export function evaluateTree(tree: CalcNode): CalcResult {
  const ops: string[] = [];
  const f = formatNumber;
  function run(n: CalcNode): number {
    switch (n.type) {
      case "num":
        return n.value;
      case "neg": {
        const a = run(n.arg);
        const r = -a;
        ops.push(`-(${f(a)}) = ${f(r)}`);
        return r;
      }
      case "bin": {
        const a = run(n.left);
        const b = run(n.right);
        const text = `${f(a)} ${n.op} ${f(b)}`;
        if ((n.op === "/" || n.op === "%") && b === 0) throw new CalcError("math", `division by zero in ${text}`);
        if (n.op === "^" && a === 0 && b < 0) throw new CalcError("math", `division by zero in ${text} (zero to a negative power)`);
        const r = apply(n.op, a, b);
        if (Number.isNaN(r)) throw new CalcError("math", `${text} is not a real number`);
        if (!Number.isFinite(r)) throw new CalcError("math", `overflow in ${text} (the result is too large)`);
        ops.push(`${text} = ${f(r)}`);
        return r;
      }
    }
  }
  let value: number;
  try {
    value = run(tree);
  } catch (e) {
    if (e instanceof CalcError) e.ops = ops;
    throw e;
  }
  return { value: Object.is(value, -0) ? 0 : value, ops };
}

function apply(op: "+" | "-" | "*" | "/" | "%" | "^", a: number, b: number): number {
  switch (op) {
    case "+":
      return a + b;
    case "-":
      return a - b;
    case "*":
      return a * b;
    case "/":
      return a / b;
    case "%":
      return a % b;
    case "^":
      return a ** b;
  }
}

/** Parses and evaluates: `evaluate("2*(3+4)/5")` → { value: 2.8, ops: ["3 + 4 = 7", "2 * 7 = 14", "14 / 5 = 2.8"] }. */
export function evaluate(src: string): CalcResult {
  return evaluateTree(parseExpression(src));
}
