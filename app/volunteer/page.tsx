"use client";
import { useEffect } from "react";
import { useSession } from "next-auth/react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useSubscription } from "@trpc/tanstack-react-query";
import { useTRPC } from "../_components/trpc";
import { creditCount, credits } from "../_components/format";
import { useVolunteer } from "../_components/VolunteerProvider";
import { CalcLog } from "./CalcLog";

export default function VolunteerPage() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const { status } = useSession();
  const signedIn = status === "authenticated";
  const { identity, settings, updateSettings: update, snap, running, start, stop, pausedBy } = useVolunteer();

  const balance = useQuery({ ...trpc.account.balance.queryOptions(), enabled: signedIn });
  const held = useQuery({ ...trpc.account.volunteer.queryOptions({ volunteerId: identity?.volunteerId ?? "unknown-id" }), enabled: !!identity });
  const cluster = useSubscription(trpc.cluster.watch.subscriptionOptions());
  const claim = useMutation(trpc.account.claimVolunteer.mutationOptions({ onSuccess: () => queryClient.invalidateQueries() }));
  useEffect(() => {
    // Each validation paid credits: refresh the balances shown.
    if (snap?.earned) void queryClient.invalidateQueries({ queryKey: trpc.account.pathKey() });
  }, [snap?.earned, queryClient, trpc]);

  if (!settings || !identity) return null;
  const state = !running ? "stopped" : pausedBy ? "paused" : snap?.connection ?? "connecting";
  return (
    <div className="stack">
      <div className="card">
        <div className="row spread">
          <div>
            <h2>Volunteer this tab</h2>
            <p className="hint">
              Your CPU computes chunks of other people&apos;s jobs in Web Workers, sandboxed away from this page. It
              keeps going while you browse other pages of this tab.{" "}
              {signedIn ? "Credits go to your account." : "You are signed out: credits are held for this browser and can be claimed when you sign in."}
            </p>
          </div>
          {running ? (
            <button className="danger big" onClick={stop}>Stop</button>
          ) : (
            <button className="primary big" onClick={start}>Start</button>
          )}
        </div>
        <dl className="stats">
          <div><dt>Status</dt><dd data-testid="volunteer-status">{state}</dd></div>
          <div><dt>Tasks done</dt><dd data-testid="tasks-done">{snap?.tasksDone ?? 0}</dd></div>
          <div><dt>Validated / invalid</dt><dd data-testid="validated">{snap?.validated ?? 0} / {snap?.invalid ?? 0}</dd></div>
          <div><dt>Earned this session</dt><dd data-testid="credits-earned">{credits(snap?.earned ?? 0)}</dd></div>
          <div>
            <dt>{signedIn ? "Account balance" : "Held for this browser"}</dt>
            <dd data-testid="balance">{signedIn ? (balance.data !== undefined ? credits(balance.data) : "—") : credits(held.data?.held ?? 0)}</dd>
          </div>
          <div><dt>Current job</dt><dd>{snap?.currentJobs.length ? snap.currentJobs.join(", ") : "—"}</dd></div>
          <div><dt>Volunteers online</dt><dd>{cluster.data?.volunteers ?? "—"}</dd></div>
          <div><dt>Tasks queued</dt><dd>{cluster.data?.tasksQueued ?? "—"}</dd></div>
        </dl>
        {pausedBy && running && <p className="hint">Paused because {pausedBy}.</p>}
        {running && (snap?.waiting ?? 0) > 0 && (
          <p className="notice" data-testid="volunteer-waiting">
            {snap!.waiting} of your results {snap!.waiting === 1 ? "waits" : "wait"} for a volunteer from another account to
            confirm {snap!.waiting === 1 ? "it" : "them"}: every unit of those jobs needs copies from different accounts, and
            no other volunteer online may compute one. They are validated, and paid, once one comes. (Your own jobs need no
            confirmation: what your machines compute for them counts at once.)
          </p>
        )}
        {snap?.lastError && <p className="error">{snap.lastError}</p>}
        {signedIn && (held.data?.held ?? 0) > 0 && (
          <p>
            This browser holds {creditCount(held.data!.held)} earned while signed out.{" "}
            <button onClick={() => claim.mutate(identity)}>Claim them</button>
          </p>
        )}
      </div>
      <div className="two-col">
        <div className="card stack">
          <h2>Your machine, your rules</h2>
          <label>
            <span>Threads: <strong>{settings.threads}</strong></span>
            <input type="range" min={1} max={Math.max(1, navigator.hardwareConcurrency || 4)} value={settings.threads}
              onChange={(e) => update({ threads: Number(e.target.value) })} aria-label="threads" />
          </label>
          <label>
            <span>CPU throttle: <strong>{Math.round(settings.throttle * 100)}%</strong> of the time</span>
            <input type="range" min={10} max={100} step={5} value={Math.round(settings.throttle * 100)}
              onChange={(e) => update({ throttle: Number(e.target.value) / 100 })} aria-label="throttle" />
          </label>
          <label className="check">
            <input type="checkbox" checked={settings.pauseWhenHidden} onChange={(e) => update({ pauseWhenHidden: e.target.checked })} />
            Pause while this tab is hidden
          </label>
          <label className="check">
            <input type="checkbox" checked={settings.pauseOnBattery} onChange={(e) => update({ pauseOnBattery: e.target.checked })} />
            Pause while the device runs on battery
          </label>
          <p className="hint">Settings are remembered in this browser.</p>
        </div>
        <div className="card">
          <h2>Workers</h2>
          {snap?.workers.length ? (
            <table>
              <thead><tr><th>#</th><th>State</th><th>Task</th><th>Done</th></tr></thead>
              <tbody>
                {snap.workers.map((w) => (
                  <tr key={w.id}>
                    <td>{w.id}</td>
                    <td><span className={`badge ${w.state}`}>{w.state}</span></td>
                    <td>{w.task ?? "—"}</td>
                    <td>{w.done}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p className="hint">Press Start to spawn {settings.threads} worker{settings.threads > 1 ? "s" : ""}.</p>
          )}
        </div>
      </div>
      <CalcLog entries={snap?.interactiveLog ?? []} />
    </div>
  );
}
