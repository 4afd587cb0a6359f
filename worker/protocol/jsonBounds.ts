// Bounds on JSON values that come from outside: volunteers' outputs, consumers' inputs and
// params. JSON.parse builds a value of any depth without complaint (a 40 KB array nested
// 20,000 levels deep is enough), but JSON.stringify, zod, structured clone and our own
// comparisons recurse, and past a few thousand levels they overflow the stack. So such a
// value is checked here first, by a walk with an explicit stack that cannot overflow.

export interface JsonLimits {
  /** Most arrays and objects nested inside one another (a scalar is depth 0, `[]` depth 1). */
  maxDepth: number;
  /** Most values in all, containers and scalars (object keys are not counted). */
  maxNodes: number;
  /** Longest string, object keys included. */
  maxStringLength: number;
}

/** How deep any value from outside may nest: far more than any real output or input needs. */
export const JSON_MAX_DEPTH = 64;

/**
 * A volunteer's output (or interactive answer). Its frame is already capped (4 MiB by
 * default), so the string limit only has to let the largest real output through: a 4096×4096
 * Mandelbrot image in one unit is a base64 string of about 45 MB.
 */
/** A volunteer frame's own levels (a results message, a result) around the deepest output allowed. */
export const FRAME_DEPTH_OVER_OUTPUTS = 4;
export const VOLUNTEER_OUTPUT_LIMITS: JsonLimits = { maxDepth: JSON_MAX_DEPTH, maxNodes: 1_000_000, maxStringLength: 64 * 1024 * 1024 };

/**
 * A consumer's free-form JSON: a job's params, a program's input items. tRPC bodies are at
 * most 1 MiB; these keep what a job carries to every one of its tasks small.
 */
export const CONSUMER_INPUT_LIMITS: JsonLimits = { maxDepth: JSON_MAX_DEPTH, maxNodes: 250_000, maxStringLength: 256 * 1024 };

const count = (n: number) => n.toLocaleString("en-US");

function scalarProblem(v: unknown, limits: JsonLimits): string | null {
  if (typeof v === "string") return v.length > limits.maxStringLength ? `has a string longer than ${count(limits.maxStringLength)} characters` : null;
  // JSON has no Infinity, but JSON.parse reads 1e999 as one (and JSON.stringify writes it as null).
  if (typeof v === "number") return Number.isFinite(v) ? null : `has a number out of range (${v})`;
  return null;
}

const tooDeep = (limits: JsonLimits) => `is nested more than ${limits.maxDepth} levels deep`;
const tooMany = (limits: JsonLimits) => `has more than ${count(limits.maxNodes)} values`;

/**
 * Containers still to look into, each followed by its depth. One array for all calls: the
 * check runs on each of tens of thousands of outputs a second, and most are a small object or
 * array. A call uses the part above where it found the stack, so one made from a getter
 * during another (never for parsed JSON) leaves the outer call's part alone.
 */
const stack: unknown[] = [];

/**
 * Why `value` is over the limits, as a phrase to follow its name ("is nested more than 64
 * levels deep"), or null when it is within them. Also refused: numbers that are not finite,
 * and keys named `__proto__` (JSON.parse makes them plain own properties, but a spread or
 * Object.assign of such an object into another sets that object's prototype instead).
 */
export function checkJsonBounds(value: unknown, limits: JsonLimits): string | null {
  if (value === null || typeof value !== "object") return scalarProblem(value, limits);
  const base = stack.length;
  const why = walk(value, limits, base);
  // A refusal leaves parts of the value on the stack: drop them. (Only then: setting an
  // array's length costs more than the walk of a small output.)
  if (stack.length !== base) stack.length = base;
  return why;
}

function walk(value: object, limits: JsonLimits, base: number): string | null {
  const { maxDepth, maxNodes, maxStringLength } = limits;
  if (maxDepth < 1) return tooDeep(limits);
  // Every container pushed was counted in `nodes`, so even a cyclic object (not from JSON,
  // but possible from callers) ends the walk.
  let v: object = value;
  let inner = 2;
  let nodes = 1;
  /** One child of the container at hand: pushed if a container, judged if a scalar. */
  const child = (x: unknown): string | null => {
    if (typeof x === "object") {
      if (x === null) return null;
      if (inner > maxDepth) return tooDeep(limits);
      stack.push(x, inner);
      return null;
    }
    return (typeof x === "string" ? x.length > maxStringLength : typeof x === "number" && !Number.isFinite(x)) ? scalarProblem(x, limits) : null;
  };
  for (;;) {
    if (Array.isArray(v)) {
      nodes += v.length;
      if (nodes > maxNodes) return tooMany(limits);
      for (let i = 0; i < v.length; i++) {
        const why = child(v[i]);
        if (why) return why;
      }
    } else {
      const keys = Object.keys(v);
      nodes += keys.length;
      if (nodes > maxNodes) return tooMany(limits);
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i];
        if (k === "__proto__") return 'has a key named "__proto__"';
        if (k.length > maxStringLength) return `has a key longer than ${count(maxStringLength)} characters`;
        const why = child((v as Record<string, unknown>)[k]);
        if (why) return why;
      }
    }
    if (stack.length === base) return null;
    inner = (stack.pop() as number) + 1;
    v = stack.pop() as object;
  }
}

/**
 * Whether JSON text nests arrays and objects deeper than `maxDepth`, read from the text
 * before anything parses it (brackets inside strings do not count). V8's JSON.parse takes
 * about a second for a 4 MB frame of `[[[[…]]]]` (about a millisecond for a flat one), so
 * such a frame is refused by this scan (a few milliseconds) instead.
 */
export function jsonTextTooDeep(text: string, maxDepth: number): boolean {
  // Each level takes at least one character.
  if (text.length <= maxDepth) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 /* [ */ || c === 123 /* { */) {
      if (++depth > maxDepth) return true;
    } else if (c === 93 /* ] */ || c === 125 /* } */) depth--;
  }
  return false;
}
