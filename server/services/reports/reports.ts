import fs from "node:fs/promises";
import path from "node:path";
import type { Env } from "../../env";
import { UserError } from "../errors";
import { benchView, metaSchema, stressView, type BenchView, type ReportMeta, type Scalar, type StressView } from "./shape";

// The reports `npm run bench` and `npm run stress` leave in REPORTS_DIR as <kind>-<stamp>.json
// plus .md (bench/lib/report.ts). A name is only ever matched against this pattern and joined
// to the directory, never taken as a path.
const NAME = /^(bench|stress)-[0-9TZ-]+$/;
const FILE = /^((bench|stress)-[0-9TZ-]+)\.(json|md)$/;
/** Larger files are not read: a report is tens of kilobytes, so this is a damaged or foreign file. */
export const MAX_REPORT_BYTES = 20 * 1024 * 1024;
/** The list reads this many of the newest reports. */
export const MAX_LISTED = 200;

export type ReportKind = "bench" | "stress";

export interface ReportListItem {
  name: string;
  kind: ReportKind;
  /** ISO time the run started (from the name, else the report, else the file's time). */
  startedAt: string;
  mode: string | null;
  commit: string | null;
  durationSeconds: number | null;
  hasJson: boolean;
  hasMarkdown: boolean;
  /** Why the JSON could not be read; the report is still listed. */
  broken: string | null;
  headline: Array<{ label: string; value: Scalar; unit: string }>;
  /** Targets met (bench) or scenarios passed (stress). */
  checks: { label: string; passed: number; failed: number; unknown: number } | null;
}

export type ReportView = { kind: "bench"; data: BenchView } | { kind: "stress"; data: StressView };

export interface ReportDetail {
  name: string;
  kind: ReportKind;
  meta: ReportMeta | null;
  /** The report as written, for download; null when there is no JSON or it does not parse. */
  json: unknown;
  view: ReportView | null;
  markdown: string | null;
  error: string | null;
}

const kindOf = (name: string) => name.slice(0, name.indexOf("-")) as ReportKind;

/** `2026-11-21T10-03-42Z` (the name's stamp) → `2026-11-21T10:03:42.000Z`, or null. */
function stampTime(name: string): string | null {
  const m = /-(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})Z$/.exec(name);
  if (!m) return null;
  const d = new Date(`${m[1]}T${m[2]}:${m[3]}:${m[4]}Z`);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

export const reportsDir = (env: Pick<Env, "REPORTS_DIR">) => path.resolve(env.REPORTS_DIR);

type Stat = { size: number; mtimeMs: number };
async function statFile(file: string): Promise<Stat | null> {
  try {
    const s = await fs.stat(file);
    return s.isFile() ? { size: s.size, mtimeMs: s.mtimeMs } : null;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}

/** The file's text, or why it was not read. */
async function readCapped(file: string, stat: Stat): Promise<{ text: string } | { error: string }> {
  if (stat.size > MAX_REPORT_BYTES) return { error: `${path.basename(file)} is ${(stat.size / 2 ** 20).toFixed(0)} MB, over the ${MAX_REPORT_BYTES / 2 ** 20} MB a report may have.` };
  return { text: await fs.readFile(file, "utf8") };
}

async function readJson(file: string, stat: Stat): Promise<{ json: unknown } | { error: string }> {
  const read = await readCapped(file, stat);
  if ("error" in read) return read;
  try {
    const json: unknown = JSON.parse(read.text);
    if (typeof json !== "object" || json === null || Array.isArray(json)) return { error: "The JSON file does not hold a report object." };
    return { json };
  } catch (e) {
    return { error: `The JSON file does not parse: ${(e as Error).message}` };
  }
}

const HEADLINE: Record<ReportKind, Array<{ key: string; label: string; unit: string }>> = {
  bench: [
    { key: "dispatch_tasks_per_s", label: "dispatch", unit: "tasks/s" },
    { key: "overhead_p99_ms", label: "overhead p99", unit: "ms" },
    { key: "efficiency_1000_volunteers", label: "efficiency, 1,000 volunteers", unit: "%" },
    { key: "server_rss_mb_max", label: "RSS max", unit: "MB" },
  ],
  stress: [
    { key: "saturation_submissions_per_s", label: "saturation", unit: "submissions/s" },
    { key: "submit_p99_ms_at_saturation", label: "submit p99", unit: "ms" },
    { key: "health_failures", label: "health failures", unit: "" },
    { key: "server_alive", label: "server alive", unit: "" },
    { key: "server_rss_mb_max", label: "RSS max", unit: "MB" },
  ],
};

function headline(kind: ReportKind, json: Record<string, unknown>): ReportListItem["headline"] {
  const summary = (typeof json.summary === "object" && json.summary !== null ? json.summary : {}) as Record<string, unknown>;
  return HEADLINE[kind].flatMap(({ key, label, unit }) => {
    let value = summary[key];
    // A short run has no 1,000-volunteer step: show the largest one it did run.
    if (key === "efficiency_1000_volunteers" && (value === null || value === undefined)) {
      const by = summary.efficiency_by_volunteers as Record<string, unknown> | undefined;
      const largest = Object.keys(by ?? {}).map(Number).filter(Number.isFinite).sort((a, b) => b - a)[0];
      if (largest === undefined || typeof by?.[String(largest)] !== "number") return [];
      return [{ label: `efficiency, ${largest.toLocaleString("en-US")} volunteers`, value: (by[String(largest)] as number) * 100, unit }];
    }
    if (typeof value !== "number" && typeof value !== "boolean") return [];
    if (unit === "%" && typeof value === "number") value *= 100;
    return [{ label, value: value as Scalar, unit }];
  });
}

function checks(kind: ReportKind, json: Record<string, unknown>): ReportListItem["checks"] {
  const count = (items: unknown, key: string, label: string) => {
    if (!Array.isArray(items) || items.length === 0) return null;
    const flags = items.map((i) => (typeof i === "object" && i !== null ? (i as Record<string, unknown>)[key] : null));
    return { label, passed: flags.filter((f) => f === true).length, failed: flags.filter((f) => f === false).length, unknown: flags.filter((f) => typeof f !== "boolean").length };
  };
  return kind === "bench" ? count(json.targets, "met", "targets met") : (count(json.scenarios, "passed", "scenarios passed") ?? count(json.targets, "met", "targets met"));
}

// Listing reads every report's JSON; keep what was read while the file is unchanged.
const listCache = new Map<string, { size: number; mtimeMs: number; item: ReportListItem }>();

async function listItem(dir: string, name: string, json: Stat | null, md: Stat | null): Promise<ReportListItem> {
  const kind = kindOf(name);
  const file = path.join(dir, `${name}.json`);
  const cached = listCache.get(file);
  if (json && cached && cached.size === json.size && cached.mtimeMs === json.mtimeMs) return { ...cached.item, hasMarkdown: md !== null };
  const fileTime = new Date((json ?? md)!.mtimeMs).toISOString();
  const item: ReportListItem = {
    name, kind, startedAt: stampTime(name) ?? fileTime, mode: null, commit: null, durationSeconds: null,
    hasJson: json !== null, hasMarkdown: md !== null, broken: null, headline: [], checks: null,
  };
  if (!json) return { ...item, broken: "Only the Markdown report is there (no JSON file)." };
  const read = await readJson(file, json);
  if ("error" in read) {
    item.broken = read.error;
  } else {
    const raw = read.json as Record<string, unknown>;
    const meta = metaSchema.parse(raw.meta);
    Object.assign(item, {
      startedAt: stampTime(name) ?? (meta.startedAt && !Number.isNaN(Date.parse(meta.startedAt)) ? new Date(meta.startedAt).toISOString() : fileTime),
      mode: meta.mode, commit: meta.commit, durationSeconds: meta.durationSeconds,
      headline: headline(kind, raw), checks: checks(kind, raw),
    });
  }
  listCache.set(file, { size: json.size, mtimeMs: json.mtimeMs, item });
  return item;
}

/** The reports in REPORTS_DIR, newest first; a missing directory is an empty list. */
export async function listReports(env: Pick<Env, "REPORTS_DIR">): Promise<{ dir: string; reports: ReportListItem[]; notListed: number }> {
  const dir = reportsDir(env);
  let entries: string[];
  try {
    entries = await fs.readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return { dir, reports: [], notListed: 0 };
    throw e;
  }
  const names = new Set(entries.flatMap((f) => FILE.exec(f)?.[1] ?? []));
  const found = await Promise.all([...names].map(async (name) => {
    const [json, md] = await Promise.all([statFile(path.join(dir, `${name}.json`)), statFile(path.join(dir, `${name}.md`))]);
    return { name, json, md, at: stampTime(name) ?? new Date((json ?? md)?.mtimeMs ?? 0).toISOString() };
  }));
  const present = found.filter((f) => f.json || f.md).sort((a, b) => b.at.localeCompare(a.at) || a.name.localeCompare(b.name));
  const shown = present.slice(0, MAX_LISTED);
  const keep = new Set(shown.map((f) => path.join(dir, `${f.name}.json`)));
  for (const file of listCache.keys()) if (path.dirname(file) === dir && !keep.has(file)) listCache.delete(file);
  const reports = await Promise.all(shown.map((f) => listItem(dir, f.name, f.json, f.md)));
  return { dir, reports, notListed: present.length - shown.length };
}

/** One report: its JSON (as written and as a typed view for the charts) and its Markdown. */
export async function readReport(env: Pick<Env, "REPORTS_DIR">, name: string): Promise<ReportDetail> {
  if (!NAME.test(name)) throw new UserError("BAD_REQUEST", "A report name looks like bench-2026-11-21T10-03-42Z (bench- or stress-, then its time stamp).");
  const dir = reportsDir(env);
  const jsonFile = path.join(dir, `${name}.json`);
  const mdFile = path.join(dir, `${name}.md`);
  const [jsonStat, mdStat] = await Promise.all([statFile(jsonFile), statFile(mdFile)]);
  if (!jsonStat && !mdStat) throw new UserError("NOT_FOUND", `There is no report ${name}.`);
  const kind = kindOf(name);
  const detail: ReportDetail = { name, kind, meta: null, json: null, view: null, markdown: null, error: null };
  if (mdStat) {
    const md = await readCapped(mdFile, mdStat);
    if ("text" in md) detail.markdown = md.text;
    else detail.error = md.error;
  }
  if (!jsonStat) return { ...detail, error: "Only the Markdown report is there (no JSON file)." };
  const read = await readJson(jsonFile, jsonStat);
  if ("error" in read) return { ...detail, error: read.error };
  detail.json = read.json;
  detail.meta = metaSchema.parse((read.json as Record<string, unknown>).meta);
  detail.view = kind === "bench" ? { kind, data: benchView(read.json) } : { kind, data: stressView(read.json) };
  return detail;
}
