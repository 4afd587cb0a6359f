"use client";
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../_components/trpc";
import { credits, times, when } from "../_components/format";

/** The user's hosts (each browser or CLI volunteer id computing for the account), renamable. */
export function Hosts() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const hosts = useQuery(trpc.account.hosts.queryOptions(undefined, { refetchInterval: 30_000 }));
  const [editing, setEditing] = useState<{ id: string; name: string } | null>(null);
  const rename = useMutation(trpc.account.renameHost.mutationOptions({
    onSuccess: () => {
      setEditing(null);
      return queryClient.invalidateQueries();
    },
  }));

  function onRename(e: FormEvent) {
    e.preventDefault();
    if (editing) rename.mutate({ volunteerId: editing.id, name: editing.name });
  }

  return (
    <div className="card stack" data-testid="hosts-card">
      <h2>Your hosts</h2>
      <p className="hint">
        Each browser or <code>tabgrid volunteer</code> computing while signed in. A host is named after what it is until you
        rename it; the leaderboard shows its name.
      </p>
      {hosts.data?.length ? (
        <table>
          <thead><tr><th>Host</th><th className="num" title="Speed relative to the reference machine">Benchmark</th><th className="num">Tasks done</th><th className="num">Credits earned</th><th>Last seen</th><th /></tr></thead>
          <tbody>
            {hosts.data.map((h) => (
              <tr key={h.id} data-testid={`host-${h.id}`}>
                <td>
                  {editing?.id === h.id ? (
                    <form className="row" onSubmit={onRename}>
                      <input aria-label="host name" value={editing.name} maxLength={60} autoFocus
                        onChange={(e) => setEditing({ id: h.id, name: e.target.value })} />
                      <button type="submit" disabled={rename.isPending}>Save</button>
                      <button type="button" className="link" onClick={() => (setEditing(null), rename.reset())}>Cancel</button>
                    </form>
                  ) : (
                    <>{h.name} <span className="hint"><code>{h.id.slice(0, 8)}</code></span></>
                  )}
                </td>
                <td className="num">{times(h.benchmarkScore)}</td>
                <td className="num">{h.tasksDone}</td>
                <td className="num">{credits(h.earned)}</td>
                <td className="nowrap">{when(h.lastSeenAt)}</td>
                <td>
                  {editing?.id !== h.id && (
                    <button className="link" onClick={() => (setEditing({ id: h.id, name: h.name }), rename.reset())}>Rename</button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="hint">{hosts.isPending ? "…" : "No hosts yet: volunteer while signed in."}</p>
      )}
      {rename.error && <p className="error">{rename.error.message}</p>}
    </div>
  );
}
