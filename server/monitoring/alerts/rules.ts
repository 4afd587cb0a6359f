import type { Db } from "../../store/prisma";
import type { AlertRuleSpec } from "./engine";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

export type DefaultRule = Pick<AlertRuleSpec, "name" | "metric" | "comparison" | "threshold" | "hysteresis" | "forSeconds" | "severity"> & {
  description: string;
};

/** What a fresh install watches. Seeded once, when the AlertRule table is empty. */
export const DEFAULT_RULES: DefaultRule[] = [
  {
    name: "Low free disk", metric: "disk_free_ratio", comparison: "<", threshold: 0.1, hysteresis: 0.02, forSeconds: 60, severity: "critical",
    description: "The data directory's volume is nearly full: results and blobs cannot be written once it is.",
  },
  {
    name: "High event-loop lag", metric: "event_loop_lag_ms", comparison: ">", threshold: 200, hysteresis: 50, forSeconds: 60, severity: "warning",
    description: "The server's event loop is busy: dispatch, results and the API all slow down.",
  },
  {
    name: "High memory", metric: "rss_bytes", comparison: ">", threshold: 1.5 * GiB, hysteresis: 128 * MiB, forSeconds: 120, severity: "warning",
    description: "The server process uses a lot of memory; it may be leaking or about to be killed.",
  },
  {
    name: "No volunteers while jobs are queued", metric: "starved", comparison: ">", threshold: 0.5, hysteresis: 0, forSeconds: 120, severity: "warning",
    description: "Units are waiting but no volunteer is online, so no job makes progress.",
  },
  {
    name: "High task failure rate", metric: "task_failure_ratio", comparison: ">", threshold: 0.2, hysteresis: 0.05, forSeconds: 120, severity: "warning",
    description: "Many results are kernel errors or fail validation: a broken kernel or misbehaving volunteers.",
  },
  {
    name: "Database errors", metric: "db_errors", comparison: ">", threshold: 0, hysteresis: 0, forSeconds: 0, severity: "critical",
    description: "Database commits or health checks failed: results may not be saved.",
  },
];

/**
 * Creates the default rules if there are no rules at all. Idempotent and safe to race: an
 * admin who deleted some rules keeps that choice, and concurrent seeds meet on the unique name.
 */
export async function seedDefaultRules(db: Db): Promise<number> {
  if ((await db.alertRule.count()) > 0) return 0;
  for (const r of DEFAULT_RULES) {
    await db.alertRule.upsert({ where: { name: r.name }, create: r, update: {} });
  }
  return DEFAULT_RULES.length;
}

export interface AlertRuleRow {
  id: string;
  name: string;
  metric: string;
  comparison: string;
  threshold: number;
  hysteresis: number;
  forSeconds: number;
  repeatMinutes: number;
  severity: string;
  silencedUntil: Date | null;
  description: string;
}

export function ruleSpec(row: AlertRuleRow): AlertRuleSpec {
  return {
    id: row.id,
    name: row.name,
    metric: row.metric,
    comparison: row.comparison === "<" ? "<" : ">",
    threshold: row.threshold,
    hysteresis: Math.max(0, row.hysteresis),
    forSeconds: row.forSeconds,
    repeatMinutes: row.repeatMinutes,
    severity: row.severity === "critical" ? "critical" : "warning",
    silencedUntil: row.silencedUntil ? row.silencedUntil.getTime() : null,
    description: row.description,
  };
}
