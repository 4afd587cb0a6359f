"use client";
import { useEffect, useMemo, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { useSubscription } from "@trpc/tanstack-react-query";
import { BarChart, Bar, ResponsiveContainer, XAxis, YAxis, Tooltip, Legend, CartesianGrid } from "recharts";
import { useTRPC } from "../_components/trpc";
import { duration, plural } from "../_components/format";
import { SeriesChart, bytes, ms, type Row } from "./SeriesChart";
import type { Sample } from "../../server/monitoring/series";
import { NodesCard } from "./NodesCard";

const HOUR = 3600_000;

export default function AdminDashboard() {
  const trpc = useTRPC();
  const history = useQuery({ ...trpc.monitoring.history.queryOptions({ minutes: 60 }), refetchOnWindowFocus: false });
  const [live, setLive] = useState<Sample[]>([]);
  const [queues, setQueues] = useState<Array<{ jobId: string; kernel: string; queued: number; running: number; done: number; total: number }>>([]);
  useSubscription(
    trpc.monitoring.live.subscriptionOptions(undefined, {
      onData: (d) => {
        setLive((prev) => [...prev.filter((s) => s.at > d.sample.at - HOUR), d.sample]);
        setQueues(d.queues);
      },
    }),
  );
  useEffect(() => {
    if (history.data) setQueues(history.data.queues);
  }, [history.data]);

  const rows: Row[] = useMemo(() => {
    const base = history.data?.samples ?? [];
    const last = base.length ? base[base.length - 1].at : 0;
    return [...base, ...live.filter((s) => s.at > last)].map((s) => ({ at: s.at, ...s.values }));
  }, [history.data, live]);
  const now = rows[rows.length - 1];

  if (history.error) return <div className="card error">{history.error.message}</div>;
  return (
    <div className="stack" data-testid="dashboard">
      <dl className="tiles">
        <div className="tile"><dt>Volunteers online</dt><dd data-testid="tile-volunteers">{now ? now.volunteers : "—"}</dd></div>
        <div className="tile"><dt>Worker threads</dt><dd>{now ? now.threads : "—"}</dd></div>
        <div className="tile"><dt>Results / s</dt><dd data-testid="tile-results">{now ? now.results_per_second.toFixed(1) : "—"}</dd></div>
        <div className="tile"><dt>Queue</dt><dd>{now ? now.queue_depth : "—"}</dd></div>
        <div className="tile"><dt>Event-loop lag</dt><dd>{now ? ms(now.event_loop_lag_ms) : "—"}</dd></div>
        <div className="tile"><dt>Memory (RSS)</dt><dd>{now ? bytes(now.rss_bytes) : "—"}</dd></div>
        <div className="tile"><dt>Free disk</dt><dd>{now ? `${bytes(now.disk_free_bytes)} (${(now.disk_free_ratio * 100).toFixed(0)}%)` : "—"}</dd></div>
        <div className="tile"><dt>Uptime</dt><dd>{now ? duration(now.uptime_seconds) : "—"}</dd></div>
      </dl>
      <p className="hint" data-testid="sample-count">{plural(rows.length, "sample")} · updated live</p>
      <NodesCard />
      <div className="charts">
        <SeriesChart testId="chart-volunteers" title="Volunteers and threads online" rows={rows}
          series={[{ key: "volunteers", name: "volunteers" }, { key: "threads", name: "threads" }]} format={(v) => v.toFixed(0)} integer />
        <SeriesChart testId="chart-throughput" title="Tasks per second" rows={rows}
          series={[{ key: "results_per_second", name: "results" }, { key: "dispatched_per_second", name: "dispatched" }, { key: "validated_per_second", name: "units validated" }]} />
        <SeriesChart title="Latency (lease to result)" rows={rows} format={ms}
          series={[{ key: "latency_p50_ms", name: "p50" }, { key: "latency_p95_ms", name: "p95" }, { key: "latency_p99_ms", name: "p99" }]} />
        <SeriesChart title="Queue" rows={rows} format={(v) => v.toFixed(0)} integer
          series={[{ key: "queue_depth", name: "units queued" }, { key: "tasks_running", name: "instances running" }, { key: "jobs_running", name: "jobs running" }]} />
        <SeriesChart title="Validation failures and errors" rows={rows} format={(v) => v.toFixed(0)} integer
          series={[{ key: "invalid_results", name: "invalid results" }, { key: "task_errors", name: "kernel errors" }]} />
        <SeriesChart title="Server CPU" rows={rows}
          series={[{ key: "cpu_percent", name: "process CPU %" }, { key: "load1", name: "load (1 min)" }]} />
        <SeriesChart title="Server memory" rows={rows} format={bytes}
          series={[{ key: "rss_bytes", name: "RSS" }, { key: "heap_used_bytes", name: "heap used" }, { key: "heap_total_bytes", name: "heap total" }]} />
        <SeriesChart title="Event-loop lag (p99)" rows={rows} format={ms} series={[{ key: "event_loop_lag_ms", name: "lag" }]} />
        <div className="card chart">
          <h3>Queue per running job</h3>
          {queues.length === 0 ? (
            <p className="hint">No job is running.</p>
          ) : (
            <ResponsiveContainer width="100%" height={200}>
              <BarChart data={queues.map((q) => ({ ...q, name: `${q.kernel} ${q.jobId.slice(0, 6)}` }))}>
                <CartesianGrid stroke="#eef0f3" />
                <XAxis dataKey="name" fontSize={11} />
                <YAxis fontSize={11} width={40} />
                <Tooltip />
                <Legend wrapperStyle={{ fontSize: 12 }} />
                <Bar dataKey="queued" stackId="a" fill="#f59e0b" isAnimationActive={false} />
                <Bar dataKey="running" stackId="a" fill="#2563eb" isAnimationActive={false} />
                <Bar dataKey="done" stackId="a" fill="#16a34a" isAnimationActive={false} />
              </BarChart>
            </ResponsiveContainer>
          )}
        </div>
      </div>
    </div>
  );
}
