"use client";
import type { StressView } from "../../../server/services/reports/shape";
import { ms } from "../SeriesChart";
import { AutoSeries, Bars, LineXY, label, num, scalar } from "./charts";
import { MetBadge, SummaryStats, TargetsTable, Timeline } from "./parts";

type Scenario = StressView["scenarios"][number];

function ScenarioCard({ scenario, index }: { scenario: Scenario; index: number }) {
  const stats = Object.entries(scenario.stats);
  return (
    <div className="card stack" data-testid="scenario">
      <div className="row spread">
        <h2 style={{ margin: 0 }}>{scenario.name || `Scenario ${index + 1}`}</h2>
        <MetBadge met={scenario.passed} yes="passed" no="failed" />
      </div>
      {scenario.description && <p className="hint">{scenario.description}</p>}
      {scenario.findings.length > 0 && (
        <ul style={{ margin: 0, paddingLeft: 20 }} data-testid="findings">
          {scenario.findings.map((f, i) => <li key={i}>{f}</li>)}
        </ul>
      )}
      <div className={scenario.series.length > 1 ? "two-col" : undefined}>
        {stats.length > 0 && (
          <table style={scenario.series.length > 1 ? undefined : { maxWidth: 480 }}>
            <tbody>
              {stats.map(([k, v]) => (
                <tr key={k}><th>{label(k)}</th><td className="num">{scalar(v, k)}</td></tr>
              ))}
            </tbody>
          </table>
        )}
        {scenario.series.length > 1 && (
          <AutoSeries testId={`chart-scenario-${index}`} title={`${scenario.name || "scenario"} over the run`} points={scenario.series} />
        )}
      </div>
    </div>
  );
}

export function StressReport({ data }: { data: StressView }) {
  const passed = data.scenarios.filter((s) => s.passed === true).length;
  const shed = Object.entries(data.shed);
  const health = data.health;
  const probes = health.series.filter((p) => "t" in p);
  return (
    <>
      {data.targets.length > 0 && <TargetsTable targets={data.targets} />}
      {data.scenarios.length > 0 && (
        <div className="card" data-testid="scenarios">
          <h2>Scenarios: {passed} of {data.scenarios.length} passed</h2>
          <table>
            <thead><tr><th>Scenario</th><th>Result</th><th>Findings</th></tr></thead>
            <tbody>
              {data.scenarios.map((s, i) => (
                <tr key={i}>
                  <td className="nowrap">{s.name}</td>
                  <td className="nowrap"><MetBadge met={s.passed} yes="passed" no="failed" /></td>
                  <td>{s.findings[0] ?? <span className="hint">none</span>}{s.findings.length > 1 && <span className="hint"> (+{s.findings.length - 1} more)</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <SummaryStats values={data.summary} />
      <div className="charts">
        {probes.length > 0 && (
          <LineXY testId="chart-health" title="Probe latency during the run" rows={probes} x="t" xFormat={(v) => `${num(v, 1)} s`} format={ms}
            series={[...new Set(probes.flatMap((p) => Object.keys(p)))].filter((k) => k !== "t").map((k) => ({ key: k, name: k === "healthMs" ? "/api/health" : k === "adminMs" ? "admin API" : label(k) }))}
            note={`${num(health.probes, 0)} probes, ${num(health.failures, 0)} failed; health p50 ${health.p50Ms === null ? "–" : ms(health.p50Ms)}, p99 ${health.p99Ms === null ? "–" : ms(health.p99Ms)}, max ${health.maxMs === null ? "–" : ms(health.maxMs)}`} />
        )}
        {shed.length > 0 && (
          <Bars testId="chart-shed" title="Load shed, by reason" x="reason" format={(v) => num(v, 0)}
            rows={shed.map(([reason, count]) => ({ reason: label(reason), count }))} series={[{ key: "count", name: "shed" }]} />
        )}
      </div>
      {data.scenarios.map((s, i) => <ScenarioCard key={i} scenario={s} index={i} />)}
      <Timeline timeline={data.timeline} phases={data.phases} />
    </>
  );
}
