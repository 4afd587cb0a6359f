import { parseArgs, type ParseArgsConfig } from "node:util";

/** A mistake in how the command was called: printed with usage, exit code 2. */
export class UsageError extends Error {}

export function parse<T extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function intOption(value: string | undefined, name: string, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new UsageError(`--${name} must be a whole number (got "${value}")`);
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
