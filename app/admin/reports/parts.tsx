"use client";
import { useEffect, useMemo, useState } from "react";
import type { BenchView, ReportMeta, Scalar } from "../../../server/services/reports/shape";
import { ms } from "../SeriesChart";
import { LineXY, label, num, scalar, type Band } from "./charts";

type Target = BenchView["targets"][number];
type Phase = BenchView["phases"][number];
type TimelinePoint = BenchView["timeline"][number];

export function MetBadge({ met, yes = "met", no = "not met" }: { met: boolean | null; yes?: string; no?: string }) {
  if (met === null) return <span className="badge">not run</span>;
  return <span className={`badge ${met ? "completed" : "failed"}`}>{met ? yes : no}</span>;
}

export function TargetsTable({ targets }: { targets: Target[] }) {
  return (
    <div className="card stack" data-testid="targets">
      <h2>Targets</h2>
      <table>
        <thead><tr><th>Target</th><th>Goal</th><th>Measured</th><th>Met</th></tr></thead>
        <tbody>
          {targets.map((t, i) => (
            <tr key={i}>
              <td>{t.target}</td>
              <td className="nowrap">{t.goal}</td>
              <td className="nowrap">{t.value}</td>
              <td className="nowrap"><MetBadge met={t.met} /></td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Commit, machine and command of a run, in one line. */
export function MetaLine({ meta }: { meta: ReportMeta | null }) {
  if (!meta) return null;
  const m = meta.machine;
  const parts = [
    `commit ${meta.commit ?? "unknown"}`,
    m.cpus !== null ? `${m.cpus} cores${m.cpuModel ? ` (${m.cpuModel})` : ""}` : null,
    m.memoryGb !== null ? `${m.memoryGb} GB` : null,
    m.node ? `Node ${m.node}` : null,
    m.platform,
    meta.durationSeconds !== null ? `ran ${num(meta.durationSeconds, 1)} s` : null,
  ].filter(Boolean);
  return (
    <p className="hint">
      {parts.join(" · ")}
      {meta.command && <> · <code className="nowrap">{meta.command}</code></>}
    </p>
  );
}

/** Every scalar of a summary, as small tiles. */
export function SummaryStats({ values }: { values: Record<string, Scalar> }) {
  const entries = Object.entries(values);
  if (!entries.length) return null;
  return (
    <dl className="stats" data-testid="summary">
      {entries.map(([k, v]) => (
        <div key={k}><dt>{label(k)}</dt><dd>{scalar(v, k)}</dd></div>
      ))}
    </dl>
  );
}

/** An object URL for some text, revoked when the text changes or the page goes. */
function useBlobUrl(text: string | null, type: string): string | null {
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    if (text === null) return setUrl(null);
    const u = URL.createObjectURL(new Blob([text], { type }));
    setUrl(u);
    return () => URL.revokeObjectURL(u);
  }, [text, type]);
  return url;
}

/** Links that save the report's files; built in the browser from what the admin API returned. */
export function Downloads({ name, json, markdown }: { name: string; json: unknown; markdown: string | null }) {
  // bench/lib/report.ts writes JSON.stringify(report, null, 2) + "\n": the same text comes back out.
  const jsonText = useMemo(() => (json ? JSON.stringify(json, null, 2) + "\n" : null), [json]);
  const jsonUrl = useBlobUrl(jsonText, "application/json");
  const mdUrl = useBlobUrl(markdown, "text/markdown");
  return (
    <div className="row">
      {jsonUrl && <a className="button" href={jsonUrl} download={`${name}.json`} data-testid="download-json">Download .json</a>}
      {mdUrl && <a className="button" href={mdUrl} download={`${name}.md`} data-testid="download-md">Download .md</a>}
    </div>
  );
}

export function MarkdownText({ markdown }: { markdown: string | null }) {
  if (markdown === null) return null;
  return (
    <details className="card">
      <summary><strong>Markdown report</strong> <span className="hint">(as written next to the JSON)</span></summary>
      <pre style={{ maxHeight: 600, marginBottom: 0 }}>{markdown}</pre>
    </details>
  );
}

const mb = (v: number) => `${num(v, 0)} MB`;
const pct = (v: number) => `${num(v, 0)}%`;
const seconds = (v: number) => `${num(v, 1)} s`;

/** The server's CPU, memory and event-loop lag over the run, phases shaded and numbered. */
export function Timeline({ timeline, phases }: { timeline: TimelinePoint[]; phases: Phase[] }) {
  const bands: Band[] = phases.flatMap((p, i) => (p.startS !== null && p.endS !== null ? [{ from: p.startS, to: p.endS, label: String(i + 1) }] : []));
  const rows = timeline.filter((p) => p.t !== null);
  if (!rows.length && !phases.length) return null;
  return (
    <>
      <div>
        <h2 style={{ margin: "8px 0 4px" }}>Server over the run</h2>
        <p className="hint">Seconds since the run started; the shaded, numbered bands are the phases in the table below (before the first one the server was starting up).</p>
      </div>
      {rows.length > 0 && (
        <div className="charts">
          <LineXY testId="chart-timeline-cpu" title="Server CPU" rows={rows} x="t" xFormat={seconds} bands={bands} format={pct}
            series={[{ key: "cpuPercent", name: "process CPU %" }]} />
          <LineXY testId="chart-timeline-rss" title="Server memory (RSS)" rows={rows} x="t" xFormat={seconds} bands={bands} format={mb}
            series={[{ key: "rssMb", name: "RSS MB" }]} />
          <LineXY testId="chart-timeline-lag" title="Event-loop lag" rows={rows} x="t" xFormat={seconds} bands={bands} format={ms}
            series={[{ key: "lagP99Ms", name: "p99" }, { key: "lagMaxMs", name: "max" }]} />
        </div>
      )}
      {phases.length > 0 && (
        <div className="card" data-testid="phases">
          <table>
            <thead>
              <tr>
                <th className="num">#</th><th>Phase</th><th className="num">From – to</th><th className="num">CPU % mean</th><th className="num">CPU % max</th>
                <th className="num">RSS max</th><th className="num">Loop lag p99 (max)</th><th className="num">Loop lag max</th>
              </tr>
            </thead>
            <tbody>
              {phases.map((p, i) => (
                <tr key={i}>
                  <td className="num">{i + 1}</td>
                  <td>{p.name}</td>
                  <td className="num nowrap">{num(p.startS, 1)} – {num(p.endS, 1)} s</td>
                  <td className="num">{num(p.usage.cpuPercentMean, 0)}</td>
                  <td className="num">{num(p.usage.cpuPercentMax, 0)}</td>
                  <td className="num">{p.usage.rssMbMax === null ? "–" : mb(p.usage.rssMbMax)}</td>
                  <td className="num">{p.usage.lagP99MsMax === null ? "–" : ms(p.usage.lagP99MsMax)}</td>
                  <td className="num">{p.usage.lagMaxMs === null ? "–" : ms(p.usage.lagMaxMs)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
