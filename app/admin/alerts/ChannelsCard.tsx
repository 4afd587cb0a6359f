"use client";
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";

export function ChannelsCard() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const channels = useQuery(trpc.alerts.channels.queryOptions());
  const refresh = () => queryClient.invalidateQueries({ queryKey: trpc.alerts.channels.queryKey() });
  const [results, setResults] = useState<Record<string, string>>({});
  const test = useMutation(
    trpc.alerts.testChannel.mutationOptions({
      onSuccess: (r, v) => setResults((m) => ({ ...m, [v.id]: r.ok ? "delivered" : `failed: ${r.error}` })),
    }),
  );
  const remove = useMutation(trpc.alerts.deleteChannel.mutationOptions({ onSuccess: refresh }));
  const toggle = useMutation(trpc.alerts.updateChannel.mutationOptions({ onSuccess: refresh }));

  const [kind, setKind] = useState<"webhook" | "email">("webhook");
  const [name, setName] = useState("");
  const [target, setTarget] = useState("");
  const [format, setFormat] = useState<"slack" | "alertmanager">("slack");
  const create = useMutation(trpc.alerts.createChannel.mutationOptions({ onSuccess: () => (setName(""), setTarget(""), refresh()) }));
  function submit(e: FormEvent) {
    e.preventDefault();
    create.mutate(kind === "webhook" ? { kind, name, url: target, format } : { kind, name, to: target });
  }

  return (
    <div className="card stack">
      <h2>Notification channels</h2>
      <p className="hint">Every firing and resolved alert goes to each enabled channel, and to the in-app notifications below.</p>
      <table>
        <thead><tr><th>Name</th><th>Kind</th><th>Target</th><th /></tr></thead>
        <tbody>
          {channels.data?.map((c) => (
            <tr key={c.id} data-testid={`channel-${c.name}`}>
              <td>{c.name}{!c.enabled && <span className="hint"> (disabled)</span>}</td>
              <td>{c.kind}{c.kind === "webhook" ? ` · ${String(c.config.format)}` : ""}</td>
              <td><code>{String(c.kind === "webhook" ? c.config.url : c.config.to)}</code></td>
              <td className="nowrap">
                <button className="link" onClick={() => test.mutate({ id: c.id })}>Send test notification</button>{" · "}
                <button className="link" onClick={() => toggle.mutate({ id: c.id, enabled: !c.enabled })}>{c.enabled ? "Disable" : "Enable"}</button>{" · "}
                <button className="link" onClick={() => confirm(`Delete the channel "${c.name}"?`) && remove.mutate({ id: c.id })}>Delete</button>
                {results[c.id] && <div className={results[c.id] === "delivered" ? "pos" : "error"} data-testid="test-result">{results[c.id]}</div>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {channels.data?.length === 0 && <p className="hint">No channels yet: alerts only appear in the app.</p>}
      <form className="row" onSubmit={submit} aria-label="new channel">
        <select value={kind} onChange={(e) => setKind(e.target.value as typeof kind)} aria-label="kind">
          <option value="webhook">Webhook</option>
          <option value="email">E-mail</option>
        </select>
        <input placeholder="Name" value={name} onChange={(e) => setName(e.target.value)} required aria-label="channel name" />
        <input
          placeholder={kind === "webhook" ? "https://hooks.example.org/…" : "ops@example.org"} value={target}
          onChange={(e) => setTarget(e.target.value)} required style={{ minWidth: 260 }} aria-label="channel target"
        />
        {kind === "webhook" && (
          <select value={format} onChange={(e) => setFormat(e.target.value as typeof format)} aria-label="format">
            <option value="slack">Slack-compatible</option>
            <option value="alertmanager">Alertmanager JSON</option>
          </select>
        )}
        <button type="submit" disabled={create.isPending}>Add channel</button>
        {create.error && <span className="error">{create.error.message}</span>}
      </form>
    </div>
  );
}
