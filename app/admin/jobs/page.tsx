"use client";
import Link from "next/link";
import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";
import { credits, when } from "../../_components/format";

const STATES = ["", "running", "completed", "failed", "cancelled"] as const;

export default function AdminJobsPage() {
  const trpc = useTRPC();
  const [search, setSearch] = useState("");
  const [state, setState] = useState<(typeof STATES)[number]>("");
  const jobs = useQuery({ ...trpc.admin.jobs.queryOptions({ search, state: state || undefined, limit: 200 }), refetchInterval: 3000 });
  return (
    <div className="card stack">
      <div className="row spread">
        <h2>Jobs</h2>
        <div className="row">
          <select value={state} onChange={(e) => setState(e.target.value as typeof state)} aria-label="state">
            {STATES.map((s) => <option key={s} value={s}>{s || "any state"}</option>)}
          </select>
          <input placeholder="Search id, kernel or owner" value={search} onChange={(e) => setSearch(e.target.value)} aria-label="search jobs" />
        </div>
      </div>
      <table>
        <thead>
          <tr>
            <th>Job</th><th>Owner</th><th>Kernel</th><th>State</th><th className="num">Done</th><th className="num">Queued</th>
            <th className="num">Running</th><th>Replication</th><th className="num">Cost / held</th><th>Submitted</th>
          </tr>
        </thead>
        <tbody>
          {jobs.data?.map((j) => (
            <tr key={j.id}>
              <td><Link href={`/jobs/${j.id}`}>{j.id}</Link></td>
              <td>{j.owner}</td>
              <td>{j.kernel}</td>
              <td><span className={`badge ${j.state}`} title={j.error ?? ""}>{j.state}</span></td>
              <td className="num nowrap" data-testid="job-done" title={j.round ? `${j.chunks} units per round${j.maxRounds ? `, at most ${j.maxRounds} rounds` : ""}` : undefined}>
                {j.round ? `round ${j.round} · ` : ""}{j.done}/{j.chunks}
              </td>
              <td className="num">{j.queued}</td>
              <td className="num">{j.running}</td>
              <td>{j.replicas}× / q{j.quorum}</td>
              <td className="num">{credits(j.cost)} / {credits(j.estimate)}</td>
              <td className="nowrap">{when(j.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {jobs.data?.length === 0 && <p className="hint">No jobs match.</p>}
    </div>
  );
}
