"use client";
import { Suspense } from "react";
import { useSearchParams } from "next/navigation";
import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";
import { plural, when } from "../../_components/format";
import { ReportList } from "./ReportList";
import { BenchReport } from "./BenchReport";
import { StressReport } from "./StressReport";
import { Downloads, MarkdownText, MetaLine } from "./parts";

export default function AdminReportsPage() {
  // useSearchParams needs a Suspense boundary to prerender the rest of the page.
  return (
    <Suspense fallback={null}>
      <Reports />
    </Suspense>
  );
}

function Reports() {
  const trpc = useTRPC();
  const params = useSearchParams();
  // New reports appear when a run finishes; listing only stats files that did not change.
  const list = useQuery({ ...trpc.reports.list.queryOptions(), refetchInterval: 15_000 });
  const reports = list.data?.reports ?? [];
  const selected = params.get("name") ?? reports.find((r) => !r.broken)?.name ?? reports[0]?.name ?? null;

  if (list.error) return <div className="card error">{list.error.message}</div>;
  if (!list.data) return <p className="hint">Loading reports…</p>;
  return (
    <div className="stack" data-testid="reports">
      <div className="card stack">
        <div className="row spread">
          <h2 style={{ margin: 0 }}>Benchmark and stress reports</h2>
          <span className="hint">from <code>{list.data.dir}</code></span>
        </div>
        {reports.length === 0 ? (
          <div className="stack" data-testid="reports-empty">
            <p style={{ margin: 0 }}>No reports yet. Reports are written by two scripts, run from the repository on a machine like the one you serve from:</p>
            <ul style={{ margin: 0 }}>
              <li><code>npm run bench</code>: dispatch throughput, overhead, parallel efficiency and the server&apos;s CPU, memory and lag (a few minutes; <code>npm run bench -- --short</code> takes about 20 s).</li>
              <li><code>npm run stress</code>: overload scenarios (submission and connection ramps, bursts, oversized frames) and how the server held up.</li>
            </ul>
            <p className="hint">Each run leaves a <code>.json</code> and a <code>.md</code> in <code>REPORTS_DIR</code> (the folder above); this page picks them up by itself.</p>
          </div>
        ) : (
          <>
            <ReportList reports={reports} selected={selected} />
            {list.data.notListed > 0 && <p className="hint">{plural(list.data.notListed, "older report")} {list.data.notListed === 1 ? "is" : "are"} not listed.</p>}
          </>
        )}
      </div>
      {selected && <ReportDetail name={selected} />}
    </div>
  );
}

function ReportDetail({ name }: { name: string }) {
  const trpc = useTRPC();
  const report = useQuery({ ...trpc.reports.get.queryOptions({ name }), refetchOnWindowFocus: false });
  if (report.error) return <div className="card error" data-testid="report-error">{report.error.message}</div>;
  const r = report.data;
  if (!r) return <p className="hint">Loading {name}…</p>;
  const title = r.kind === "bench" ? "Benchmark" : "Stress test";
  const started = r.meta?.startedAt && !Number.isNaN(Date.parse(r.meta.startedAt)) ? when(r.meta.startedAt) : r.name;
  return (
    <div className="stack" data-testid="report" data-name={r.name}>
      <div className="card stack">
        <div className="row spread">
          <div>
            <h2 style={{ marginBottom: 4 }}>
              {title}{r.meta?.mode ? ` (${r.meta.mode})` : ""} · {started}
            </h2>
            <MetaLine meta={r.meta} />
          </div>
          <Downloads name={r.name} json={r.json} markdown={r.markdown} />
        </div>
        {r.error && <p className="error" data-testid="report-broken">{r.error}</p>}
      </div>
      {r.view?.kind === "bench" && <BenchReport data={r.view.data} />}
      {r.view?.kind === "stress" && <StressReport data={r.view.data} />}
      <MarkdownText markdown={r.markdown} />
    </div>
  );
}
