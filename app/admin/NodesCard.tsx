"use client";
import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "../_components/trpc";
import { plural } from "../_components/format";

/** The coordinators serving the cluster (docs/scaling.md); a single node shows itself. */
export function NodesCard() {
  const trpc = useTRPC();
  const nodes = useQuery({ ...trpc.admin.nodes.queryOptions(), refetchInterval: 3000 });
  if (nodes.error) return <div className="card error">{nodes.error.message}</div>;
  const list = nodes.data?.nodes ?? [];
  return (
    <div className="card" data-testid="nodes">
      <h3>{nodes.data?.mode === "cluster" ? `Cluster: ${plural(list.length, "node")}` : "Node"}</h3>
      <table>
          <thead>
            <tr><th>Node</th><th>Health</th><th>Volunteers</th><th>Threads</th><th>Tasks / s</th><th>Slices</th><th>Last heard</th></tr>
          </thead>
          <tbody>
            {list.map((n) => (
              <tr key={n.id} data-testid={`node-${n.id}`}>
                <td>{n.id}{n.self ? " (this one)" : ""}<br /><span className="hint">{n.url}</span></td>
                <td className={n.health === "up" ? undefined : "error"}>{n.health}</td>
                <td>{n.volunteers}</td>
                <td>{n.threads}</td>
                <td>{n.tasksPerSecond.toFixed(1)}</td>
                <td>{nodes.data?.mode === "cluster" ? n.slices : "—"}</td>
                <td>{n.lastSeenSecondsAgo === null ? "—" : `${n.lastSeenSecondsAgo} s ago`}</td>
              </tr>
            ))}
          </tbody>
      </table>
      {nodes.data?.mode === "cluster" && <p className="hint">The tiles and charts on this page are this node&apos;s own; each node records its own samples.</p>}
    </div>
  );
}
