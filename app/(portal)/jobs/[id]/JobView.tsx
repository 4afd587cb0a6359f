"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useSubscription } from "@trpc/tanstack-react-query";
import { useTRPC } from "../../../_components/trpc";
import { credits, duration, times, when } from "../../../_components/format";
import { MandelbrotImage } from "./MandelbrotImage";
import { RoundsCard } from "./RoundsCard";
import { mergeRounds } from "./mergeRounds";
import { CostCard } from "./CostCard";
import { QuorumWait } from "./QuorumWait";
import { ConfirmButton } from "../../../_components/ConfirmButton";

export function JobView({ id }: { id: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const { initial, live, job } = useWatchedJob(id);
  const ended = job && job.state !== "running";
  // A result too large for the API is refused for good: asking again would not help.
  const result = useQuery({
    ...trpc.jobs.result.queryOptions({ id }), enabled: job?.state === "completed",
    retry: (n, e) => e.data?.code !== "UNPROCESSABLE_CONTENT" && n < 3,
  });
  const cluster = useSubscription(trpc.cluster.watch.subscriptionOptions(undefined, { enabled: !ended }));
  const cancel = useMutation(trpc.jobs.cancel.mutationOptions({ onSuccess: () => queryClient.invalidateQueries() }));
  const stop = useMutation(trpc.jobs.stopAfterRound.mutationOptions({ onSuccess: () => queryClient.invalidateQueries() }));
  const router = useRouter();
  const remove = useMutation(trpc.jobs.delete.mutationOptions({
    onSuccess: async () => {
      await queryClient.invalidateQueries();
      router.push("/jobs");
    },
  }));

  if (initial.error) return <div className="card error">{initial.error.message}</div>;
  if (!job) return <div className="card">Loading…</div>;
  const p = job.progress;
  const pct = p.total ? Math.round((100 * p.done) / p.total) : 0;
  return (
    <div className="stack">
      <div className="card">
        <div className="row spread">
          <h2>
            {job.kernel} job <code>{job.id}</code>
          </h2>
          <span className={`badge ${job.status}`} data-testid="job-state">{job.status}</span>
        </div>
        {live.error && !ended && <p className="hint" role="status">Not updating live: {live.error.message} Reload the page to try again.</p>}
        <div className="progress" aria-label="progress">
          <div style={{ width: `${pct}%` }} />
        </div>
        <dl className="stats">
          <div><dt>Done</dt><dd data-testid="units-done">{p.done} / {p.total}</dd></div>
          <div><dt>Running</dt><dd>{p.running}</dd></div>
          <div><dt>Queued</dt><dd>{p.queued}</dd></div>
          <div><dt>Throughput</dt><dd data-testid="throughput">{p.throughput === null ? "—" : `${p.throughput.toFixed(1)} units/s`}</dd></div>
          <div><dt>{ended ? "Took" : "ETA"}</dt><dd data-testid="eta">{ended ? duration(job.durationMs / 1000) : duration(p.etaSeconds)}</dd></div>
          <div><dt>Cost / held</dt><dd>{credits(job.cost)} / {credits(job.estimate)}</dd></div>
        </dl>
        <p className="hint">
          Submitted {when(job.createdAt)} · {"program" in job.params ? (
            <>program <code>{String((job.params.program as { hash: string }).hash).slice(0, 16)}…</code> · parameters <code>{JSON.stringify(job.params.params)}</code></>
          ) : (
            <>parameters <code>{JSON.stringify(job.params)}</code></>
          )}
        </p>
        <p className="hint" data-testid="replication">
          Replication: {job.replication.replicas} {job.replication.replicas === 1 ? "copy" : "copies"} per unit, quorum{" "}
          {job.replication.quorum}, at most {job.replication.maxReplicas}
          {job.replication.adaptive ? ", adaptive" : ""}
          {job.replication.tolerance ? `, tolerance ${job.replication.tolerance.relative}` : ", exact comparison"} · results{" "}
          {job.results.valid} valid, {job.results.invalid} invalid, {job.results.errors} errors, {job.results.pending} awaiting a quorum ·
          overhead {job.overhead === null ? "—" : times(job.overhead)} (you pay for each validated copy)
        </p>
        {job.error && <p className="error" data-testid="job-error">{job.error}</p>}
        {job.state === "running" && p.waiting && (
          <QuorumWait id={id} waiting={p.waiting} replicas={job.replication.replicas} owner={job.ownedByViewer} />
        )}
        {job.state === "running" && cluster.data?.volunteers === 0 && (
          <p className="notice">
            No volunteers are online, so nothing is computing this job yet. Open <Link href="/volunteer">the volunteer
            page</Link> in another tab, or run <code>npx tabgrid volunteer</code>.
          </p>
        )}
        {job.state === "running" && (
          <ConfirmButton question="Really cancel this job?" onConfirm={() => cancel.mutate({ id })} disabled={cancel.isPending}>Cancel job</ConfirmButton>
        )}
        {job.state === "running" && job.round !== null && job.ownedByViewer && (
          job.stopAfterRound
            ? <p className="hint" data-testid="stopping">Stops after round {job.round}; its result is the state that round leaves.</p>
            : <button type="button" onClick={() => stop.mutate({ id })} disabled={stop.isPending}>Stop after this round</button>
        )}
        {ended && job.ownedByViewer && (
          <ConfirmButton
            question="Really delete this job and its outputs?"
            onConfirm={() => remove.mutate({ id })} disabled={remove.isPending}
          >Delete job</ConfirmButton>
        )}
        {remove.error && <p className="error">{remove.error.message}</p>}
        {stop.error && <p className="error">{stop.error.message}</p>}
        {cancel.error && <p className="error">{cancel.error.message}</p>}
      </div>
      <CostCard job={job} />
      {job.round !== null && (
        <RoundsCard
          rounds={job.rounds} maxRounds={job.maxRounds} running={job.state === "running"}
          epsilon={typeof job.params.epsilon === "number" ? job.params.epsilon : undefined}
          metricName={job.kernel === "program" ? Object.keys(job.rounds.find((r) => Object.keys(r.stats).length)?.stats ?? {})[0] : undefined}
        />
      )}
      {job.state === "completed" && (
        <div className="card">
          <div className="row spread">
            <h2>Result</h2>
            <div className="row">
              <a className="button" href={`/api/jobs/${id}/units.json`} download>Per-unit outputs</a>
              <a className="button" href={`/api/jobs/${id}/result.json`} download>Download JSON</a>
            </div>
          </div>
          {result.error ? (
            // Too large to show (the API says so): the buttons above download it.
            <p className="hint" data-testid="result-note">{result.error.message}</p>
          ) : !result.data ? (
            <p>Loading result…</p>
          ) : job.kernel === "mandelbrot" ? (
            <MandelbrotImage image={result.data as never} />
          ) : (
            <pre data-testid="result">{JSON.stringify(result.data, null, 2)}</pre>
          )}
        </div>
      )}
    </div>
  );
}

/**
 * The job as read, then as its watch sends it, with every round so far. Each update carries
 * only the rounds after its `roundsAfter` (see mergeRounds), and a long job's rounds come a
 * page per update, several at once: each is merged as it arrives, since updates that came
 * between two renders would be missed by merging at render.
 */
function useWatchedJob(id: string) {
  const trpc = useTRPC();
  const initial = useQuery(trpc.jobs.get.queryOptions({ id }));
  type Rounds = NonNullable<typeof initial.data>["rounds"];
  const [rounds, setRounds] = useState<Rounds | undefined>(undefined);
  const live = useSubscription(trpc.jobs.watch.subscriptionOptions({ id }, {
    onData: (update) => setRounds((held) => mergeRounds(held ?? [], update)),
  }));
  const data = live.data ?? initial.data;
  const job = data && { ...data, rounds: live.data && rounds ? rounds : data.rounds };
  return { initial, live, job };
}
