"use client";
import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { clockTime } from "../_components/format";

export type Row = { at: number } & Record<string, number>;

const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c"];
const clock = (t: number) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

/** One dashboard chart: a few series of the sampled metrics over time. */
export function SeriesChart(props: {
  title: string;
  rows: Row[];
  series: Array<{ key: string; name: string }>;
  format?: (v: number) => string;
  /** Counts: whole-number ticks only. */
  integer?: boolean;
  testId?: string;
}) {
  const format = props.format ?? ((v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2)));
  return (
    <div className="card chart" data-testid={props.testId}>
      <h3>{props.title}</h3>
      <ResponsiveContainer width="100%" height={200}>
        <LineChart data={props.rows} margin={{ top: 4, right: 12, bottom: 0, left: 0 }}>
          <CartesianGrid stroke="#eef0f3" />
          <XAxis dataKey="at" type="number" scale="time" domain={["dataMin", "dataMax"]} tickFormatter={clock} minTickGap={40} fontSize={11} />
          <YAxis tickFormatter={format} width={76} fontSize={11} allowDecimals={!props.integer} />
          <Tooltip labelFormatter={(t) => clockTime(Number(t))} formatter={(v) => format(Number(v))} />
          <Legend wrapperStyle={{ fontSize: 12 }} />
          {props.series.map((s, i) => (
            <Line key={s.key} dataKey={s.key} name={s.name} stroke={COLORS[i % COLORS.length]} dot={false} isAnimationActive={false} strokeWidth={1.6} />
          ))}
        </LineChart>
      </ResponsiveContainer>
    </div>
  );
}

export const bytes = (v: number) =>
  v >= 1024 ** 3 ? `${(v / 1024 ** 3).toFixed(1)} GiB` : v >= 1024 ** 2 ? `${(v / 1024 ** 2).toFixed(0)} MiB` : `${(v / 1024).toFixed(0)} KiB`;
export const ms = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${v.toFixed(v < 10 ? 1 : 0)} ms`);
