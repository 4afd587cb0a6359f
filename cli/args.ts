import { parseArgs, type ParseArgsConfig } from "node:util";

/** A mistake in how the command was called: printed with usage, exit code 2. */
export class UsageError extends Error {}

/**
 * A value option followed by a negative number (`--range -5:5`, `--tolerance -1`) takes it as
 * its value: parseArgs alone would call it ambiguous, as if the number were a flag.
 */
function joinNegativeValues(argv: string[], options: NonNullable<ParseArgsConfig["options"]>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") return [...out, ...argv.slice(i)];
    const next = argv[i + 1];
    if (arg.startsWith("--") && options[arg.slice(2)]?.type === "string" && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

export function parse<T extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: T) {
  try {
    return parseArgs({ args: joinNegativeValues(argv, options), options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function intOption(value: string | undefined, name: string, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n)) throw new UsageError(`--${name} must be a whole number (got "${value}")`);
  return n;
}

/** A count or size that must be at least `min` (1 unless said): `--block-size 0` says so. */
export function positiveIntOption(value: string | undefined, name: string, min = 1): number | undefined {
  const n = intOption(value, name);
  if (n !== undefined && n < min) throw new UsageError(`--${name} must be a whole number of at least ${min} (got "${value}")`);
  return n;
}

/** A size in bytes of at least `min`, with an optional K or M (KiB, MiB): `--output-limit 64K`. */
export function bytesOption(value: string | undefined, name: string, min = 1): number | undefined {
  if (value === undefined) return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmM]i?[bB]?)?\s*$/.exec(value);
  // A fraction only with a unit (1.5M): bytes are whole.
  const n = !m || (!m[2] && m[1].includes(".")) ? NaN : Math.round(Number(m[1]) * (m[2] ? (/^[kK]/.test(m[2]) ? 1024 : 1024 * 1024) : 1));
  if (!(n >= min) || !Number.isSafeInteger(n)) throw new UsageError(`--${name} must be a size of at least ${min} bytes, e.g. 65536, 64K or 2M (got "${value}")`);
  return n;
}

/** A positive number of seconds (may have a fraction): `--time-limit 0` says so. */
export function secondsOption(value: string | undefined, name: string, max = Infinity): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0 || n > max) {
    throw new UsageError(`--${name} must be a number of seconds above 0${max < Infinity ? ` and at most ${max}` : ""} (got "${value}")`);
  }
  return n;
}

export const connectionOptions = {
  url: { type: "string" },
  "api-key": { type: "string" },
  json: { type: "boolean", default: false },
} as const;

export function connection(values: { url?: string; "api-key"?: string }) {
  const url = (values.url ?? process.env.TABGRID_URL ?? "http://localhost:3000").replace(/\/+$/, "");
  if (!/^https?:\/\//.test(url)) throw new UsageError(`--url must start with http:// or https:// (got "${url}")`);
  return { url, apiKey: values["api-key"] ?? process.env.TABGRID_API_KEY };
}

/** A count with its noun, singular only for exactly one: "1 unit", "3 units", "0.5 credits". */
export const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
