"use client";
import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../_components/trpc";
import { credits, when } from "../_components/format";
import { ConfirmButton } from "../_components/ConfirmButton";

export function VolunteerTable() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [search, setSearch] = useState("");
  const list = useQuery({ ...trpc.admin.volunteers.queryOptions({ search, limit: 200 }), refetchInterval: 3000 });
  const refresh = () => queryClient.invalidateQueries({ queryKey: trpc.admin.volunteers.pathKey() });
  const ban = useMutation(trpc.admin.ban.mutationOptions({ onSuccess: refresh }));
  const unban = useMutation(trpc.admin.unban.mutationOptions({ onSuccess: refresh }));
  const banned = (until: Date | string | null) => until && new Date(until) > new Date();

  return (
    <div className="card stack">
      <div className="row spread">
        <h2>Volunteers</h2>
        <input placeholder="Search id, name or email" value={search} onChange={(e) => setSearch(e.target.value)} aria-label="search volunteers" />
      </div>
      {list.error && <p className="error">{list.error.message}</p>}
      {ban.error && <p className="error">{ban.error.message}</p>}
      <table>
        <thead>
          <tr>
            <th>Host</th><th>Account</th><th>Online</th><th className="num">Tasks</th><th className="num">Earned</th>
            <th className="num">Valid</th><th className="num">Invalid</th><th className="num">Errors</th><th className="num">In a row</th>
            <th className="num" title="Spot-checks and known-answer tasks passed: the host's verified record">Checked</th>
            <th className="num">Turnaround</th><th>Last seen</th><th>Ban</th>
          </tr>
        </thead>
        <tbody>
          {list.data?.map((v) => {
            const hostBanned = banned(v.host.bannedUntil);
            return (
              <tr key={v.id} data-testid={`volunteer-${v.id}`}>
                <td>{v.name}<div className="hint"><code>{v.id}</code></div></td>
                <td>{v.email ?? <span className="hint">anonymous</span>}</td>
                <td>{v.onlineThreads ? `${v.onlineThreads} thread${v.onlineThreads > 1 ? "s" : ""}` : "—"}</td>
                <td className="num">{v.tasksDone}</td>
                <td className="num">{credits(v.earned)}</td>
                <td className="num">{v.host.valid}</td>
                <td className={`num ${v.host.invalid ? "neg" : ""}`}>{v.host.invalid}</td>
                <td className="num">{v.host.errors}</td>
                <td className="num">{v.host.consecutiveValid}</td>
                <td className="num">{v.host.spotChecks}</td>
                <td className="num">{v.host.avgTurnaroundMs === null ? "—" : `${Math.round(v.host.avgTurnaroundMs)} ms`}</td>
                <td>{when(v.lastSeenAt)}</td>
                <td>
                  {hostBanned ? (
                    <>
                      <span className="badge failed" title={v.host.banReason ?? ""}>until {when(v.host.bannedUntil!)}</span>{" "}
                      <button className="link" onClick={() => unban.mutate({ id: v.host.id })}>Unban</button>
                    </>
                  ) : (
                    <ConfirmButton className="link" question="Really ban this host for 24 h?" disabled={ban.isPending}
                      onConfirm={() => ban.mutate({ id: v.host.id, hours: 24, reason: "banned from the admin page" })}>
                      Ban 24 h
                    </ConfirmButton>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {list.data?.length === 0 && <p className="hint">No volunteers yet.</p>}
    </div>
  );
}
