import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { repoRoot } from "./server";

/** Where reports go, and what the admin page reads: `<repo>/reports` unless REPORTS_DIR says otherwise. */
export const reportsDir = () => path.resolve(process.env.REPORTS_DIR ?? path.join(repoRoot, "reports"));

export interface ReportMeta {
  kind: "bench" | "stress";
  mode: "full" | "short";
  startedAt: string;
  durationSeconds: number;
  commit: string | null;
  command: string;
  machine: { cpus: number; cpuModel: string; memoryGb: number; node: string; platform: string };
}

export function reportMeta(kind: ReportMeta["kind"], mode: ReportMeta["mode"], started: Date, command: string): ReportMeta {
  let commit: string | null = null;
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repoRoot, stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
  } catch {
    // Not a git checkout (a tarball): the report says so.
  }
  return {
    kind, mode, startedAt: started.toISOString(), durationSeconds: Math.round((Date.now() - started.getTime()) / 100) / 10, commit, command,
    machine: {
      cpus: os.availableParallelism(), cpuModel: os.cpus()[0]?.model ?? "unknown", memoryGb: Math.round(os.totalmem() / 2 ** 30),
      node: process.version, platform: `${os.platform()} ${os.arch()}`,
    },
  };
}

/** Writes `<kind>-<timestamp>.json` and `.md` side by side; returns their paths. */
export function writeReport(meta: ReportMeta, json: object, markdown: string): { json: string; md: string } {
  const dir = reportsDir();
  fs.mkdirSync(dir, { recursive: true });
  const stamp = meta.startedAt.replace(/[:.]/g, "-").replace(/-\d{3}Z$/, "Z");
  const base = path.join(dir, `${meta.kind}-${stamp}`);
  fs.writeFileSync(`${base}.json`, JSON.stringify({ meta, ...json }, null, 2) + "\n");
  fs.writeFileSync(`${base}.md`, markdown);
  return { json: `${base}.json`, md: `${base}.md` };
}

/** A Markdown table from rows of cells. */
export function table(head: string[], rows: Array<Array<string | number>>): string {
  const cell = (c: string | number) => String(c).replace(/\|/g, "\\|");
  return [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.map(cell).join(" | ")} |`)].join("\n");
}

export const fmt = (x: number | null | undefined, digits = 1) =>
  x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
