import { z } from "zod";

// Reports are written by scripts that keep evolving (and by older checkouts), so every field is
// read leniently: a missing or mistyped field becomes null / "" / [] instead of failing the
// whole report, and the page draws whatever is there.

export type Scalar = number | string | boolean | null;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isScalar = (v: unknown): v is Scalar => v === null || ["number", "string", "boolean"].includes(typeof v);

const num = z.number().nullable().catch(null);
const text = z.string().catch("");
const optText = z.string().nullable().catch(null);
const flag = z.boolean().nullable().catch(null);

/** An object whose fields all fall back on their own: anything that is not an object reads as {}. */
const obj = <S extends z.ZodRawShape>(shape: S) => z.preprocess((v) => (isObject(v) ? v : {}), z.object(shape));

/** A list item: must be an object (anything else is dropped), its fields fall back on their own. */
const entry = <S extends z.ZodRawShape>(shape: S) => z.object(shape);

/** A list that keeps the items that parse and drops the rest. */
const list = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => (Array.isArray(v) ? v : []), z.array(z.unknown())).transform((v) => v.flatMap((i) => {
    const r = item.safeParse(i);
    return r.success ? [r.data as z.output<T>] : [];
  }));

/** Only the scalar entries of an object (a summary also holds nested objects). */
const scalars = z.preprocess((v) => (isObject(v) ? v : {}), z.record(z.string(), z.unknown())).transform((v) =>
  Object.fromEntries(Object.entries(v).filter(([, x]) => isScalar(x))) as Record<string, Scalar>);

/** Only the finite numbers of an object: one point of a series. */
const numbers = z.preprocess((v) => (isObject(v) ? v : {}), z.record(z.string(), z.unknown())).transform((v) =>
  Object.fromEntries(Object.entries(v).filter(([, x]) => typeof x === "number" && Number.isFinite(x))) as Record<string, number>);

/** A series: points of numbers (non-objects and empty points dropped). */
const points = list(numbers).transform((ps) => ps.filter((p) => Object.keys(p).length > 0));

export const metaSchema = obj({
  kind: optText,
  mode: optText,
  startedAt: optText,
  durationSeconds: num,
  commit: optText,
  command: optText,
  machine: obj({ cpus: num, cpuModel: optText, memoryGb: num, node: optText, platform: optText }),
});

const usage = obj({ cpuPercentMean: num, cpuPercentMax: num, rssMbMax: num, rssMbEnd: num, lagP99MsMax: num, lagMaxMs: num });
const latency = obj({ count: num, p50: num, p95: num, p99: num, max: num });
const target = entry({
  target: text,
  goal: text,
  value: z.union([z.string(), z.number()]).transform(String).catch(""),
  met: flag,
});
const phase = entry({ name: text, startS: num, endS: num, usage });
const timelinePoint = entry({ t: num, cpuPercent: num, rssMb: num, lagP99Ms: num, lagMaxMs: num });

export const benchSchema = obj({
  meta: metaSchema,
  summary: scalars,
  targets: list(target),
  throughput: list(entry({
    volunteers: num,
    threads: num,
    tasksPerSecond: num,
    seconds: num,
    series: list(z.tuple([z.number(), z.number()])),
    usage,
  })),
  overhead: list(entry({
    load: num,
    volunteers: num,
    targetPerSecond: num,
    achievedPerSecond: num,
    summary: latency,
    histogram: list(entry({ upToMs: num, count: num })),
  })),
  efficiency: list(entry({ volunteers: num, tasks: num, idealSeconds: num, makespanSeconds: num, efficiency: num, jobSeconds: num })),
  calc: obj({ requests: num, perSecond: num, failed: num, summary: latency }),
  phases: list(phase),
  timeline: list(timelinePoint),
});

export const stressSchema = obj({
  meta: metaSchema,
  summary: scalars,
  /** Load shed by reason (summary.shed). */
  shed: numbers,
  targets: list(target),
  scenarios: list(entry({
    name: text,
    description: text,
    passed: flag,
    findings: list(z.string()),
    stats: scalars,
    /** Points keyed by `t` (seconds) or `step`, plus whatever the scenario measured. */
    series: points,
  })),
  health: obj({ probes: num, failures: num, p50Ms: num, p99Ms: num, maxMs: num, series: points }),
  phases: list(phase),
  timeline: list(timelinePoint),
});

export type ReportMeta = z.output<typeof metaSchema>;
export type BenchView = z.output<typeof benchSchema>;
export type StressView = z.output<typeof stressSchema>;

export function benchView(json: unknown): BenchView {
  return benchSchema.parse(json);
}

export function stressView(json: unknown): StressView {
  // summary.shed is a nested object, which `scalars` drops from the summary: lift it out first.
  return stressSchema.parse(isObject(json) ? { ...json, shed: isObject(json.summary) ? json.summary.shed : undefined } : json);
}
