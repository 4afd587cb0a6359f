"use client";
import type { ReactNode } from "react";
import {
  Bar, BarChart, CartesianGrid, Legend, Line, LineChart, ReferenceArea, ReferenceLine, ResponsiveContainer, Tooltip, XAxis, YAxis,
} from "recharts";
import { ms } from "../SeriesChart";

// The dashboard's palette (SeriesChart), so reports and live charts read alike.
const GOAL = "#b91c1c";
export const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2"];

/** A number for people: grouped thousands, few decimals, "–" when missing. */
export function num(v: number | null | undefined, digits = 1): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  return v.toLocaleString("en-US", { maximumFractionDigits: Math.abs(v) >= 100 ? 0 : digits });
}

const axisNumber = (v: number) =>
  Math.abs(v) >= 10_000 ? `${num(v / 1000, 0)}k` : Math.abs(v) >= 100 ? num(v, 0) : num(v, 2);

export type Point = Record<string, number | null>;
export interface SeriesDef {
  key: string;
  name: string;
  /** Series of another magnitude go on a second axis on the right. */
  right?: boolean;
}
export interface Band {
  from: number;
  to: number;
  label: string;
}

/** Tooltips list series in the order they are drawn, not by name. */
const order = (series: SeriesDef[], key: unknown) => series.findIndex((s) => s.key === key);

function ChartCard(props: { title: string; testId?: string; note?: ReactNode; children: ReactNode; wide?: boolean }) {
  return (
    <div className="card chart" data-testid={props.testId} style={props.wide ? { gridColumn: "1 / -1" } : undefined}>
      <h3>{props.title}</h3>
      {props.children}
      {props.note && <p className="hint" style={{ marginTop: 6 }}>{props.note}</p>}
    </div>
  );
}

/** Lines over a numeric x (seconds, steps), optionally with shaded, numbered phases behind them. */
export function LineXY(props: {
  title: string;
  rows: Point[];
  x: string;
  xFormat?: (v: number) => string;
  series: SeriesDef[];
  format?: (v: number) => string;
  rightFormat?: (v: number) => string;
  bands?: Band[];
  testId?: string;
  note?: ReactNode;
  wide?: boolean;
  height?: number;
}) {
  const format = props.format ?? axisNumber;
  const rightFormat = props.rightFormat ?? format;
  const hasRight = props.series.some((s) => s.right);
  const xFormat = props.xFormat ?? ((v: number) => num(v, 1));
  return (
    <ChartCard title={props.title} testId={props.testId} note={props.note} wide={props.wide}>
      <ResponsiveContainer width="100%" height={props.height ?? 220}>
        <LineChart data={props.rows} margin={{ top: 14, right: hasRight ? 0 : 12, bottom: 0, left: 0 }}>
          <CartesianGrid stroke="#eef0f3" />
          <XAxis dataKey={props.x} type="number" domain={["dataMin", "dataMax"]} tickFormatter={xFormat} fontSize={11} minTickGap={24} />
          <YAxis yAxisId="left" tickFormatter={format} width={64} fontSize={11} />
          {hasRight && <YAxis yAxisId="right" orientation="right" tickFormatter={rightFormat} width={64} fontSize={11} />}
          {props.bands?.map((b, i) => (
            <ReferenceArea key={i} yAxisId="left" x1={b.from} x2={b.to} fill={i % 2 ? "#f1f5f9" : "#e0e7ff"} fillOpacity={0.6} ifOverflow="hidden"
              label={{ value: b.label, position: "insideTop", fontSize: 10, fill: "#64748b" }} />
          ))}
          <Tooltip labelFormatter={(v) => `${props.x === "t" ? "t = " : `${props.x} `}${xFormat(Number(v))}`} itemSorter={(item) => order(props.series, item.dataKey)}
            formatter={(v, _name, item) => (props.series.find((s) => s.key === item.dataKey)?.right ? rightFormat : format)(Number(v))} />
          <Legend wrapperStyle={{ fontSize: 12 }} itemSorter={null} />
          {props.series.map((s, i) => (
            <Line key={s.key} yAxisId={s.right ? "right" : "left"} dataKey={s.key} name={s.right ? `${s.name} (right)` : s.name} stroke={COLORS[i % COLORS.length]}
              dot={props.rows.length <= 20 ? { r: 2.5 } : false} isAnimationActive={false} strokeWidth={1.6} connectNulls={false} />
          ))}
        </LineChart>
      </ResponsiveContainer>
    </ChartCard>
  );
}

/** Bars over a category (volunteers, load, histogram bin). */
export function Bars(props: {
  title: string;
  rows: Array<Record<string, string | number | null>>;
  x: string;
  series: SeriesDef[];
  format?: (v: number) => string;
  /** A goal drawn across the chart. */
  goal?: { y: number; label: string };
  domain?: [number, number];
  testId?: string;
  note?: ReactNode;
  wide?: boolean;
}) {
  const format = props.format ?? axisNumber;
  return (
    <ChartCard title={props.title} testId={props.testId} note={props.note} wide={props.wide}>
      <ResponsiveContainer width="100%" height={220}>
        <BarChart data={props.rows} margin={{ top: 14, right: 12, bottom: 0, left: 0 }}>
          <CartesianGrid stroke="#eef0f3" />
          <XAxis dataKey={props.x} fontSize={11} minTickGap={4} />
          <YAxis tickFormatter={format} width={64} fontSize={11} domain={props.domain} />
          <Tooltip formatter={(v) => format(Number(v))} itemSorter={(item) => order(props.series, item.dataKey)} />
          {props.series.length > 1 && <Legend wrapperStyle={{ fontSize: 12 }} itemSorter={null} />}
          {props.goal && <ReferenceLine y={props.goal.y} stroke={GOAL} strokeDasharray="4 3" ifOverflow="extendDomain" />}
          {props.series.map((s, i) => (
            <Bar key={s.key} dataKey={s.key} name={s.name} fill={COLORS[i % COLORS.length]} isAnimationActive={false} maxBarSize={48} />
          ))}
        </BarChart>
      </ResponsiveContainer>
      {/* Labelled here rather than on the line, where bars would cover the label. */}
      {props.goal && <p className="hint" style={{ color: GOAL, textAlign: "center" }}>- - - {props.goal.label}</p>}
    </ChartCard>
  );
}

/**
 * Lines for whatever numeric keys a series' points carry, against `t` or `step`. Latencies
 * (keys in ms) go on a right-hand axis when other quantities share the chart; otherwise keys
 * far smaller than the largest go there, so that they do not lie flat on the bottom.
 */
export function AutoSeries(props: { title: string; points: Array<Record<string, number>>; testId?: string; wide?: boolean }) {
  const x = props.points.some((p) => "t" in p) ? "t" : props.points.some((p) => "step" in p) ? "step" : null;
  const keys = [...new Set(props.points.flatMap((p) => Object.keys(p)))].filter((k) => k !== x && k !== "t" && k !== "step");
  const rows: Point[] = x ? props.points : props.points.map((p, i) => ({ ...p, index: i + 1 }));
  const isMs = (k: string) => label(k).split(" ").includes("ms");
  const byUnit = keys.some(isMs) && !keys.every(isMs);
  const top = (k: string) => Math.max(0, ...props.points.map((p) => Math.abs(p[k] ?? 0)));
  const largest = Math.max(0, ...keys.map(top));
  const series = keys.map((k) => ({ key: k, name: label(k), right: byUnit ? isMs(k) : largest > 0 && top(k) * 20 < largest }));
  return (
    <LineXY title={props.title} rows={rows} x={x ?? "index"} series={series} testId={props.testId} wide={props.wide}
      rightFormat={byUnit ? ms : undefined} xFormat={x === "t" ? (v) => `${num(v, 1)} s` : (v) => num(v, 0)} />
  );
}

/** `submit_p99_ms_at_saturation` / `connectMsP99` → "submit p99 ms at saturation" / "connect ms p99". */
export function label(key: string): string {
  return key.replace(/_/g, " ").replace(/([a-z0-9])([A-Z])/g, (_, a: string, b: string) => `${a} ${b.toLowerCase()}`).replace(/\bper s\b/g, "/ s").trim();
}

/** A scalar as text: numbers grouped (but not codes, e.g. a close code 1013), booleans as yes / no. */
export function scalar(v: number | string | boolean | null | undefined, key = ""): string {
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number") return /code/i.test(key) ? String(v) : num(v, 2);
  return v ?? "–";
}
