"use client";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";
import { when } from "../../_components/format";

const BADGE: Record<string, string> = { firing: "failed", resolved: "completed", pending: "cancelled", repeat: "failed", test: "running" };

export function HistoryCard() {
  const trpc = useTRPC();
  const events = useQuery({ ...trpc.alerts.events.queryOptions({ limit: 50 }), refetchInterval: 5000 });
  return (
    <div className="card stack">
      <h2>Alert history</h2>
      {events.data?.items.length ? (
        <table>
          <thead><tr><th>When</th><th>Rule</th><th>State</th><th>Message</th></tr></thead>
          <tbody>
            {events.data.items.map((e) => (
              <tr key={e.id}>
                <td className="nowrap">{when(e.at, { seconds: true })}</td>
                <td>{e.name}</td>
                <td><span className={`badge ${BADGE[e.state] ?? ""}`}>{e.state}</span></td>
                <td>{e.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="hint">No alert has fired yet.</p>
      )}
    </div>
  );
}

export function NotificationsCard() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const list = useQuery({ ...trpc.alerts.notifications.queryOptions({ limit: 30 }), refetchInterval: 5000 });
  const markAll = useMutation(trpc.alerts.markRead.mutationOptions({ onSuccess: () => queryClient.invalidateQueries({ queryKey: trpc.alerts.pathKey() }) }));
  const items = list.data?.items ?? [];
  return (
    <div className="card stack">
      <div className="row spread">
        <h2>In-app notifications</h2>
        {items.some((n) => !n.readAt) && <button onClick={() => markAll.mutate({ all: true })}>Mark all read</button>}
      </div>
      {items.length ? (
        <ul className="notifications">
          {items.map((n) => (
            <li key={n.id} className={n.readAt ? "read" : "unread"}>
              <strong>{n.title}</strong> <span className="hint">{when(n.at)}</span>
              <div>{n.body}</div>
            </li>
          ))}
        </ul>
      ) : (
        <p className="hint">Nothing yet.</p>
      )}
    </div>
  );
}
