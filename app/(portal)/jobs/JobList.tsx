"use client";
import Link from "next/link";
import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";
import { credits, when } from "../../_components/format";

export function JobList() {
  const trpc = useTRPC();
  const jobs = useQuery({ ...trpc.jobs.list.queryOptions({ limit: 50 }), refetchInterval: 2000 });
  if (!jobs.data) return <div className="card">Loading jobs…</div>;
  return (
    <div className="card">
      <h2>My jobs</h2>
      {jobs.data.length === 0 ? (
        <p className="hint">No jobs yet. Submit one, then open the volunteer page in another tab to compute it.</p>
      ) : (
        <table>
          <thead>
            <tr><th>Job</th><th>Kernel</th><th>Status</th><th>Progress</th><th>Cost</th><th>Submitted</th></tr>
          </thead>
          <tbody>
            {jobs.data.map((j) => (
              <tr key={j.id}>
                <td><Link href={`/jobs/${j.id}`}>{j.id}</Link></td>
                <td>{j.kernel}</td>
                <td>
                  <span className={`badge ${j.status}`}>{j.status}</span>
                  {j.error && <div className="error small" data-testid="job-list-error">{j.error}</div>}
                </td>
                <td>{j.done}/{j.chunks}</td>
                <td>{credits(j.state === "running" ? j.estimate : j.cost)}</td>
                <td>{when(j.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
