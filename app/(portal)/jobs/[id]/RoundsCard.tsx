"use client";
import { CartesianGrid, Line, LineChart, ReferenceLine, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";

export interface RoundRow {
  round: number;
  latencyMs: number | null;
  metric: number | null;
  stats: Record<string, number>;
}

const num = (v: number | null | undefined) =>
  v === null || v === undefined ? "—" : v === 0 ? "0" : Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toPrecision(4);
const ms = (v: number | null) => (v === null ? null : v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);

/**
 * The metric axis: log scale over whole decades, from a decade below the smallest positive
 * metric (or the threshold, if lower) up to the first power of ten at or above the largest. A metric of exactly 0
 * (the centroids stopped moving: often the last round) has no logarithm, so it is drawn on
 * the bottom line, labelled 0.
 */
export function metricAxis(metrics: number[], epsilon: number | undefined) {
  const positive = [...metrics.filter((m) => m > 0), ...(epsilon !== undefined && epsilon > 0 ? [epsilon] : [])];
  const lo = positive.length ? Math.floor(Math.log10(Math.min(...positive))) : 0;
  const hasZero = metrics.some((m) => m === 0);
  const bottom = hasZero ? lo - 1 : lo;
  const top = Math.max(positive.length ? Math.ceil(Math.log10(Math.max(...positive))) : 1, bottom + 1);
  // At most about six labelled decades.
  const step = Math.max(1, Math.ceil((top - bottom) / 6));
  const ticks: number[] = [];
  for (let e = bottom; e <= top; e += step) ticks.push(10 ** e);
  if (ticks.at(-1) !== 10 ** top) ticks.push(10 ** top);
  const zero = hasZero ? 10 ** bottom : null;
  return { domain: [10 ** bottom, 10 ** top] as [number, number], ticks, zero, plot: (m: number) => (m === 0 && zero !== null ? zero : m) };
}

/**
 * An iterative job's rounds: the converging metric of every finished round on a log scale (as
 * it usually falls by orders of magnitude; see metricAxis for a metric of 0) with the
 * convergence threshold, and a table of each round's latency, metric and the kernel's other
 * numbers.
 */
export function RoundsCard(props: {
  rounds: RoundRow[]; maxRounds: number | null; running: boolean; epsilon?: number;
  /** A program's rounds: its metrics are all in stats, the first of them (this name) charted as converging. */
  metricName?: string;
}) {
  const { rounds, metricName } = props;
  const extra = [...new Set(rounds.flatMap((r) => Object.keys(r.stats)))];
  // A program's other metrics (accuracy…), on a linear scale of their own.
  const others = metricName ? extra.filter((k) => k !== metricName) : [];
  const finished = rounds.filter((r): r is RoundRow & { metric: number } => r.metric !== null && Number.isFinite(r.metric) && r.metric >= 0);
  const epsilon = props.epsilon !== undefined && props.epsilon > 0 ? props.epsilon : undefined;
  const axis = metricAxis(finished.map((r) => r.metric), epsilon);
  const data = finished.map((r) => ({ round: r.round, y: axis.plot(r.metric), metric: r.metric }));
  return (
    <div className="card" data-testid="rounds">
      <h2>
        Rounds <span className="hint">{rounds.length}{props.maxRounds ? ` of at most ${props.maxRounds}` : ""}</span>
      </h2>
      {data.length > 0 && (
        <div className="chart" data-testid="rounds-chart">
          <h3>{metricName ? `${metricName} per round` : "Converging metric per round"}{epsilon !== undefined && <span className="hint"> · dashed: the threshold ε = {num(epsilon)}</span>}</h3>
          <ResponsiveContainer width="100%" height={200}>
            <LineChart data={data} margin={{ top: 8, right: 12, bottom: 0, left: 0 }}>
              <CartesianGrid stroke="#eef0f3" />
              <XAxis dataKey="round" type="number" domain={[1, "dataMax"]} allowDecimals={false} fontSize={11} />
              <YAxis
                scale="log" domain={axis.domain} ticks={axis.ticks} allowDataOverflow
                tickFormatter={(v: number) => (v === axis.zero ? "0" : String(Number(v.toPrecision(3))))} width={76} fontSize={11}
              />
              <Tooltip labelFormatter={(r) => `round ${r}`} formatter={(_v, _name, item) => num((item.payload as { metric: number }).metric)} />
              {epsilon !== undefined && (
                <ReferenceLine y={epsilon} stroke="#16a34a" strokeDasharray="4 4" label={{ value: "ε", fontSize: 11, position: "right" }} />
              )}
              <Line dataKey="y" name="metric" stroke="#2563eb" dot isAnimationActive={false} strokeWidth={1.6} />
            </LineChart>
          </ResponsiveContainer>
        </div>
      )}
      {others.length > 0 && data.length > 0 && (
        <div className="chart" data-testid="rounds-metrics-chart">
          <h3>{others.join(", ")} per round</h3>
          <ResponsiveContainer width="100%" height={160}>
            <LineChart data={rounds.filter((r) => r.latencyMs !== null).map((r) => ({ round: r.round, ...r.stats }))} margin={{ top: 8, right: 12, bottom: 0, left: 0 }}>
              <CartesianGrid stroke="#eef0f3" />
              <XAxis dataKey="round" type="number" domain={[1, "dataMax"]} allowDecimals={false} fontSize={11} />
              <YAxis domain={["auto", "auto"]} width={76} fontSize={11} tickFormatter={(v: number) => String(Number(v.toPrecision(3)))} />
              <Tooltip labelFormatter={(r) => `round ${r}`} formatter={(v) => num(v as number)} />
              {others.map((k, i) => (
                <Line key={k} dataKey={k} name={k} stroke={["#16a34a", "#d97706", "#7c3aed", "#db2777"][i % 4]} dot={false} isAnimationActive={false} strokeWidth={1.6} />
              ))}
            </LineChart>
          </ResponsiveContainer>
        </div>
      )}
      <table>
        <thead>
          <tr>
            <th>Round</th>
            <th>Latency</th>
            {!metricName && <th>Metric</th>}
            {extra.map((k) => <th key={k}>{k}</th>)}
          </tr>
        </thead>
        <tbody>
          {rounds.map((r) => (
            <tr key={r.round} data-testid="round-row">
              <td>{r.round}</td>
              <td>{ms(r.latencyMs) ?? (props.running ? "running…" : "—")}</td>
              {!metricName && <td>{num(r.metric)}</td>}
              {extra.map((k) => <td key={k}>{num(r.stats[k])}</td>)}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
