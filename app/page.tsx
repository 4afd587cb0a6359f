"use client";
import Link from "next/link";
import { useSubscription } from "@trpc/tanstack-react-query";
import { useTRPC } from "./_components/trpc";

export default function Home() {
  const trpc = useTRPC();
  const status = useSubscription(trpc.cluster.watch.subscriptionOptions());
  const s = status.data;
  return (
    <div className="stack">
      <section className="hero">
        <h1>Your browser tabs are a compute cluster.</h1>
        <p>
          Volunteers open a tab and their Web Workers compute chunks of jobs. Consumers submit jobs, pay in credits, and get
          results back in seconds. Volunteers earn those credits for every chunk they compute.
        </p>
        <div className="row">
          <Link className="button primary big" href="/volunteer">Volunteer this tab</Link>
          <Link className="button big" href="/jobs">Submit a job</Link>
        </div>
      </section>
      <dl className="stats card">
        <div><dt>Volunteers online</dt><dd>{s?.volunteers ?? "—"}</dd></div>
        <div><dt>Worker threads</dt><dd>{s?.threads ?? "—"}</dd></div>
        <div><dt>Jobs running</dt><dd>{s?.jobsRunning ?? "—"}</dd></div>
        <div><dt>Tasks queued</dt><dd>{s?.tasksQueued ?? "—"}</dd></div>
        <div><dt>Throughput</dt><dd>{s ? `${s.tasksPerSecond.toFixed(1)} tasks/s` : "—"}</dd></div>
      </dl>
    </div>
  );
}
