import os from "node:os";
import { describe, expect, it } from "vitest";
import { PromMetrics } from "../../server/monitoring/metrics";
import { completeValues } from "../../server/monitoring/history";

/** `name{labels} value` lines of the exposition, for one family. */
async function lines(m: PromMetrics, family: string) {
  const text = await m.registry.metrics();
  return text.split("\n").filter((l) => l.startsWith(family) && !l.startsWith("#"));
}

describe("Prometheus metrics", () => {
  it("count what the coordinator reports, with fixed label values exported from the start", async () => {
    const m = new PromMetrics();
    expect(await lines(m, "tabgrid_results_total")).toEqual([
      'tabgrid_results_total{outcome="received"} 0',
      'tabgrid_results_total{outcome="valid"} 0',
      'tabgrid_results_total{outcome="invalid"} 0',
      'tabgrid_results_total{outcome="error"} 0',
    ]);
    m.dispatched(4);
    m.dispatched(2);
    m.resultReceived(250);
    m.resultReceived(1500);
    m.taskError();
    m.validated(2, 1);
    m.jobFinished("failed");
    m.messageRejected();
    m.commitSucceeded(7, 0.004);
    m.commitFailed();
    m.commitDropped("result");

    expect(await lines(m, "tabgrid_tasks_dispatched_total")).toEqual(["tabgrid_tasks_dispatched_total 6"]);
    expect(await lines(m, "tabgrid_results_total")).toEqual([
      'tabgrid_results_total{outcome="received"} 2',
      'tabgrid_results_total{outcome="valid"} 2',
      'tabgrid_results_total{outcome="invalid"} 1',
      'tabgrid_results_total{outcome="error"} 1',
    ]);
    expect(await lines(m, "tabgrid_units_validated_total")).toEqual(["tabgrid_units_validated_total 1"]);
    expect(await lines(m, "tabgrid_commit_dropped_total")).toEqual(['tabgrid_commit_dropped_total{op="result"} 1']);
    expect(await lines(m, "tabgrid_jobs_finished_total")).toContain('tabgrid_jobs_finished_total{state="failed"} 1');
    expect(await lines(m, "tabgrid_volunteer_messages_rejected_total")).toEqual(["tabgrid_volunteer_messages_rejected_total 1"]);
    expect(await lines(m, "tabgrid_commit_failures_total")).toEqual(["tabgrid_commit_failures_total 1"]);
    expect(await lines(m, "tabgrid_commit_operations_total")).toEqual(["tabgrid_commit_operations_total 7"]);
    // Turnaround in seconds, not milliseconds.
    const turnaround = await lines(m, "tabgrid_task_turnaround_seconds");
    expect(turnaround).toContain("tabgrid_task_turnaround_seconds_sum 1.75");
    expect(turnaround).toContain("tabgrid_task_turnaround_seconds_count 2");
    expect(turnaround).toContain('tabgrid_task_turnaround_seconds_bucket{le="0.25"} 1');
    expect(turnaround).toContain('tabgrid_task_turnaround_seconds_bucket{le="1"} 1');
    expect(turnaround).toContain('tabgrid_task_turnaround_seconds_bucket{le="2.5"} 2');
    expect(await lines(m, "tabgrid_commit_duration_seconds_count")).toEqual(["tabgrid_commit_duration_seconds_count 1"]);
  });

  it("read gauges from the cluster, the latest sample and the data directory at scrape time", async () => {
    const m = new PromMetrics();
    let volunteers = 3;
    const values = completeValues({ event_loop_lag_ms: 42 });
    m.collectFrom({
      cluster: { status: () => ({ volunteers, threads: 12, tasksQueued: 7, tasksRunning: 5, jobsRunning: 2, connections: 4, pendingCommits: 1 }) },
      latest: () => ({ at: Date.now(), values }),
      dataDir: os.tmpdir(),
    });
    expect(await lines(m, "tabgrid_volunteers ")).toEqual(["tabgrid_volunteers 3"]);
    volunteers = 1;
    expect(await lines(m, "tabgrid_volunteers ")).toEqual(["tabgrid_volunteers 1"]);
    expect(await lines(m, "tabgrid_worker_threads")).toEqual(["tabgrid_worker_threads 12"]);
    expect(await lines(m, "tabgrid_tasks_queued")).toEqual(["tabgrid_tasks_queued 7"]);
    expect(await lines(m, "tabgrid_tasks_running")).toEqual(["tabgrid_tasks_running 5"]);
    expect(await lines(m, "tabgrid_jobs_running")).toEqual(["tabgrid_jobs_running 2"]);
    expect(await lines(m, "tabgrid_volunteer_connections")).toEqual(["tabgrid_volunteer_connections 4"]);
    expect(await lines(m, "tabgrid_event_loop_lag_seconds")).toEqual(["tabgrid_event_loop_lag_seconds 0.042"]);
    const [free] = await lines(m, "tabgrid_data_disk_free_bytes");
    const [size] = await lines(m, "tabgrid_data_disk_size_bytes");
    expect(Number(free.split(" ")[1])).toBeGreaterThan(0);
    expect(Number(free.split(" ")[1])).toBeLessThanOrEqual(Number(size.split(" ")[1]));
  });

  it("keep each server's numbers in its own registry", async () => {
    const a = new PromMetrics();
    const b = new PromMetrics();
    a.dispatched(5);
    expect(await lines(a, "tabgrid_tasks_dispatched_total")).toEqual(["tabgrid_tasks_dispatched_total 5"]);
    expect(await lines(b, "tabgrid_tasks_dispatched_total")).toEqual(["tabgrid_tasks_dispatched_total 0"]);
    // Node's default metrics are in both.
    expect((await b.registry.metrics()).includes("\nprocess_resident_memory_bytes ")).toBe(true);
  });
});
