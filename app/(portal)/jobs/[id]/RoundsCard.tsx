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
 * An iterative job's rounds: the converging metric per round (log scale, as it usually
 * falls by orders of magnitude; a round that reached exactly 0 shows in the table only) and
 * a table of each round's latency, metric and the kernel's other numbers.
 */
export function RoundsCard(props: { rounds: RoundRow[]; maxRounds: number | null; running: boolean; epsilon?: number }) {
  const { rounds } = props;
  const extra = [...new Set(rounds.flatMap((r) => Object.keys(r.stats)))];
  const data = rounds.filter((r) => r.metric !== null).map((r) => ({ round: r.round, metric: r.metric! > 0 ? r.metric : null }));
  const positive = data.some((d) => d.metric !== null);
  return (
    <div className="card" data-testid="rounds">
      <h2>
        Rounds <span className="hint">{rounds.length}{props.maxRounds ? ` of at most ${props.maxRounds}` : ""}</span>
      </h2>
      {positive && (
        <div className="chart" data-testid="rounds-chart">
          <h3>Converging metric per round</h3>
          <ResponsiveContainer width="100%" height={200}>
            <LineChart data={data} margin={{ top: 4, right: 12, bottom: 0, left: 0 }}>
              <CartesianGrid stroke="#eef0f3" />
              <XAxis dataKey="round" type="number" domain={[1, "dataMax"]} allowDecimals={false} fontSize={11} />
              <YAxis scale="log" domain={["auto", "auto"]} tickFormatter={(v: number) => num(v)} width={76} fontSize={11} />
              <Tooltip labelFormatter={(r) => `round ${r}`} formatter={(v) => num(Number(v))} />
              {props.epsilon !== undefined && props.epsilon > 0 && (
                <ReferenceLine y={props.epsilon} stroke="#16a34a" strokeDasharray="4 4" label={{ value: "ε", fontSize: 11, position: "right" }} />
              )}
              <Line dataKey="metric" name="metric" stroke="#2563eb" dot isAnimationActive={false} strokeWidth={1.6} connectNulls={false} />
            </LineChart>
          </ResponsiveContainer>
        </div>
      )}
      <table>
        <thead>
          <tr>
            <th>Round</th>
            <th>Latency</th>
            <th>Metric</th>
            {extra.map((k) => <th key={k}>{k}</th>)}
          </tr>
        </thead>
        <tbody>
          {rounds.map((r) => (
            <tr key={r.round} data-testid="round-row">
              <td>{r.round}</td>
              <td>{ms(r.latencyMs) ?? (props.running ? "running…" : "—")}</td>
              <td>{num(r.metric)}</td>
              {extra.map((k) => <td key={k}>{num(r.stats[k])}</td>)}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
