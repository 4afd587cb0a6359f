"use client";
import type { BenchView } from "../../../server/services/reports/shape";
import { ms } from "../SeriesChart";
import { Bars, LineXY, num, type Point } from "./charts";
import { SummaryStats, TargetsTable, Timeline } from "./parts";

/** The number in a target's goal ("≥ 20,000 tasks/s" → 20000), to draw it on the matching chart. */
function goal(targets: BenchView["targets"], startsWith: string): number | null {
  const t = targets.find((x) => x.target.startsWith(startsWith));
  const m = t && /([\d,]+(?:\.\d+)?)/.exec(t.goal);
  return m ? Number(m[1].replace(/,/g, "")) : null;
}

const perSecond = (v: number) => `${num(v, 0)}/s`;
const volunteers = (n: number | null) => (n === null ? "?" : `${num(n, 0)}`);
const fleet = (n: number | null) => `${volunteers(n)} volunteer${n === 1 ? "" : "s"}`;

/** Throughput over each dispatch phase, one line per fleet size, on a shared time axis. */
function phaseSeries(throughput: BenchView["throughput"]) {
  const rows = new Map<number, Point>();
  for (const run of throughput) {
    const width = run.series.length > 1 ? run.series[1][0] - run.series[0][0] : 0;
    for (const [t, rate] of run.series) {
      // The last bucket is cut off by the phase's end and would read as a drop to zero.
      if (run.seconds !== null && t + width / 2 > run.seconds) continue;
      const row = rows.get(t) ?? { t };
      row[`v${run.volunteers}`] = rate;
      rows.set(t, row);
    }
  }
  return [...rows.values()].sort((a, b) => a.t! - b.t!);
}

export function BenchReport({ data }: { data: BenchView }) {
  const dispatchGoal = goal(data.targets, "dispatch throughput");
  const overheadGoal = goal(data.targets, "p99 overhead");
  const efficiencyGoal = goal(data.targets, "efficiency");
  const half = data.overhead.find((o) => o.load === 0.5) ?? data.overhead[0];
  const calc = data.calc;
  return (
    <>
      {data.targets.length > 0 && <TargetsTable targets={data.targets} />}
      <SummaryStats values={data.summary} />
      <div className="charts">
        {data.throughput.length > 0 && (
          <Bars testId="chart-throughput" title="Dispatch throughput by fleet size (trivial tasks)" x="volunteers" format={perSecond}
            rows={data.throughput.map((t) => ({ volunteers: `${volunteers(t.volunteers)} × ${t.threads ?? "?"}`, tasksPerSecond: t.tasksPerSecond }))}
            series={[{ key: "tasksPerSecond", name: "tasks/s" }]}
            goal={dispatchGoal === null ? undefined : { y: dispatchGoal, label: `goal ${num(dispatchGoal, 0)}/s` }}
            note="volunteers × threads each; every result durably committed before its acknowledgement" />
        )}
        {data.throughput.some((t) => t.series.length > 0) && (
          <LineXY testId="chart-throughput-series" title="Throughput during each dispatch phase" rows={phaseSeries(data.throughput)} x="t"
            xFormat={(v) => `${num(v, 2)} s`} format={perSecond}
            series={data.throughput.map((t) => ({ key: `v${t.volunteers}`, name: fleet(t.volunteers) }))} />
        )}
        {data.overhead.length > 0 && (
          <Bars testId="chart-overhead" title="Dispatch-to-result overhead by load (open model)" x="load" format={ms}
            rows={data.overhead.map((o) => ({ load: o.load === null ? "?" : `${num(o.load * 100, 0)}% of peak`, ...o.summary }))}
            series={[{ key: "p50", name: "p50" }, { key: "p95", name: "p95" }, { key: "p99", name: "p99" }, { key: "max", name: "max" }]}
            goal={overheadGoal === null ? undefined : { y: overheadGoal, label: `p99 goal ${ms(overheadGoal)}` }}
            note={data.overhead.map((o) => `${num((o.load ?? 0) * 100, 0)}%: ${num(o.achievedPerSecond, 0)} of ${num(o.targetPerSecond, 0)} tasks/s achieved`).join(" · ")} />
        )}
        {half && half.histogram.length > 0 && (
          <Bars testId="chart-histogram" title={`Overhead histogram at ${num((half.load ?? 0) * 100, 0)}% of peak (ms)`} x="upTo" format={(v) => num(v, 0)}
            rows={half.histogram.map((b) => ({ upTo: b.upToMs === null ? "?" : num(b.upToMs, 1), count: b.count }))}
            series={[{ key: "count", name: "tasks" }]}
            note={`tasks by overhead, each bar up to the ms on its label; ${num(half.summary.count, 0)} tasks, p50 ${half.summary.p50 === null ? "–" : ms(half.summary.p50)}, p99 ${half.summary.p99 === null ? "–" : ms(half.summary.p99)}`} />
        )}
        {data.efficiency.length > 0 && (
          <Bars testId="chart-efficiency" title="Parallel efficiency by volunteers (100 ms tasks)" x="volunteers" format={(v) => `${num(v, 0)}%`} domain={[0, 100]}
            rows={data.efficiency.map((e) => ({ volunteers: volunteers(e.volunteers), efficiency: e.efficiency === null ? null : e.efficiency * 100 }))}
            series={[{ key: "efficiency", name: "efficiency %" }]}
            goal={efficiencyGoal === null ? undefined : { y: efficiencyGoal, label: `goal ${efficiencyGoal}%` }}
            note={data.efficiency.map((e) => `${fleet(e.volunteers)}: makespan ${num(e.makespanSeconds, 3)} s for an ideal ${num(e.idealSeconds, 3)} s`).join(" · ")} />
        )}
        {calc.requests !== null && (
          <div className="card chart" data-testid="calc">
            <h3>Interactive calc round trip</h3>
            <dl className="stats" style={{ margin: 0 }}>
              <div><dt>requests</dt><dd>{num(calc.requests, 0)} at {num(calc.perSecond, 0)}/s</dd></div>
              <div><dt>failed</dt><dd>{num(calc.failed, 0)}</dd></div>
              {(["p50", "p95", "p99", "max"] as const).map((k) => (
                <div key={k}><dt>{k}</dt><dd>{calc.summary[k] === null ? "–" : ms(calc.summary[k]!)}</dd></div>
              ))}
            </dl>
          </div>
        )}
      </div>
      <Timeline timeline={data.timeline} phases={data.phases} />
    </>
  );
}
