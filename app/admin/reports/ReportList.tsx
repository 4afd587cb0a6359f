"use client";
import { Fragment } from "react";
import Link from "next/link";
import type { ReportListItem } from "../../../server/services/reports/reports";
import { when } from "../../_components/format";
import { num, scalar } from "./charts";

function figure(h: ReportListItem["headline"][number]) {
  const value = typeof h.value === "number" ? num(h.value, h.unit === "%" ? 1 : 2) : scalar(h.value);
  return `${value}${h.unit === "%" ? "%" : h.unit ? ` ${h.unit}` : ""}`;
}

function Checks({ checks }: { checks: ReportListItem["checks"] }) {
  if (!checks) return <span className="hint">–</span>;
  const ran = checks.passed + checks.failed;
  const cls = checks.failed > 0 ? "failed" : ran > 0 ? "completed" : "";
  return (
    <span className="nowrap">
      <span className={`badge ${cls}`}>{checks.passed}/{ran} {checks.label}</span>
      {checks.unknown > 0 && <span className="hint"> · {checks.unknown} not run</span>}
    </span>
  );
}

export const reportHref = (name: string) => `/admin/reports?name=${encodeURIComponent(name)}`;

export function ReportList({ reports, selected }: { reports: ReportListItem[]; selected: string | null }) {
  return (
    <div style={{ maxHeight: 360, overflowY: "auto" }}>
      <table data-testid="report-list">
        <thead>
          <tr><th>Started</th><th>Kind</th><th>Mode</th><th>Commit</th><th>Key figures</th><th>Checks</th></tr>
        </thead>
        <tbody>
          {reports.map((r) => (
            <tr key={r.name} data-testid="report-row" data-name={r.name} style={r.name === selected ? { background: "#eef2ff" } : undefined}>
              <td className="nowrap"><Link href={reportHref(r.name)} scroll={false} title={r.name}>{when(r.startedAt)}</Link></td>
              <td><span className={`badge ${r.kind === "bench" ? "running" : "cancelled"}`}>{r.kind}</span></td>
              <td>{r.mode ?? "–"}</td>
              <td><code>{r.commit ?? "–"}</code></td>
              <td>
                {r.broken ? (
                  <span className="error" data-testid="broken"><span className="badge failed">broken</span> {r.broken}</span>
                ) : r.headline.length ? (
                  r.headline.map((h, i) => (
                    <Fragment key={h.label}>
                      {i > 0 && <span className="hint"> · </span>}
                      <span className="nowrap"><span className="hint">{h.label}</span> {figure(h)}</span>
                    </Fragment>
                  ))
                ) : (
                  <span className="hint">no summary</span>
                )}
              </td>
              <td><Checks checks={r.checks} /></td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
