"use client";
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../_components/trpc";
import { when } from "../_components/format";

export function ApiKeys() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const keys = useQuery(trpc.account.apiKeys.queryOptions());
  const [name, setName] = useState("cli");
  const refresh = () => queryClient.invalidateQueries({ queryKey: trpc.account.apiKeys.queryKey() });
  const create = useMutation(trpc.account.createApiKey.mutationOptions({ onSuccess: refresh }));
  const revoke = useMutation(trpc.account.revokeApiKey.mutationOptions({ onSuccess: refresh }));

  function onCreate(e: FormEvent) {
    e.preventDefault();
    create.mutate({ name });
  }

  return (
    <div className="card stack">
      <h2>API keys</h2>
      <p className="hint">
        For the CLI: <code>TABGRID_API_KEY=… npx tabgrid submit pi --chunks 8 --wait</code>
      </p>
      <form className="row" onSubmit={onCreate}>
        <input aria-label="key name" value={name} onChange={(e) => setName(e.target.value)} maxLength={60} />
        <button type="submit" disabled={create.isPending}>Create key</button>
      </form>
      {create.error && <p className="error">{create.error.message}</p>}
      {create.data && (
        <div className="notice">
          Copy this key now; it is not shown again:
          <pre data-testid="new-api-key">{create.data.key}</pre>
        </div>
      )}
      {keys.data?.length ? (
        <table>
          <thead><tr><th>Name</th><th>Key</th><th>Created</th><th>Last used</th><th /></tr></thead>
          <tbody>
            {keys.data.map((k) => (
              <tr key={k.id}>
                <td>{k.name}</td>
                <td><code>{k.prefix}…</code></td>
                <td>{when(k.createdAt)}</td>
                <td>{k.lastUsedAt ? when(k.lastUsedAt) : "never"}</td>
                <td><button className="link" onClick={() => revoke.mutate({ id: k.id })}>Revoke</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="hint">No keys yet.</p>
      )}
    </div>
  );
}
