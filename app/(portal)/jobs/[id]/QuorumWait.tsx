"use client";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../../../_components/trpc";

/**
 * Says, in plain words, that results wait for a confirming copy that no volunteer online may
 * compute, and offers the owner the two ways out: take them as they are, or need fewer copies.
 */
export function QuorumWait({ id, waiting, replicas, owner }: {
  id: string;
  waiting: { units: number; results: number };
  replicas: number;
  owner: boolean;
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const done = { onSuccess: () => queryClient.invalidateQueries() };
  const accept = useMutation(trpc.jobs.acceptUnconfirmed.mutationOptions(done));
  const lower = useMutation(trpc.jobs.setReplication.mutationOptions(done));
  const n = waiting.results;
  const error = accept.error ?? lower.error;
  return (
    <div className="notice stack" data-testid="quorum-wait">
      <p>
        <strong>{n} {n === 1 ? "result waits" : "results wait"}</strong> for a volunteer from another account to confirm{" "}
        {n === 1 ? "it" : "them"}: each unit needs {replicas} copies from different accounts, and no volunteer online may
        compute the missing {waiting.units === 1 ? "copy" : "copies"}. They are not validated until one comes.
      </p>
      {owner && (
        <div className="row">
          <button className="primary" disabled={accept.isPending} onClick={() => accept.mutate({ id })}>
            Accept the unconfirmed results
          </button>
          {replicas > 1 && (
            <button disabled={lower.isPending} onClick={() => lower.mutate({ id, replicas: 1, quorum: 1 })}>
              Lower to 1 copy per unit
            </button>
          )}
        </div>
      )}
      {owner && <p className="hint">Or volunteer yourself: results from your own machines need no confirmation for your own jobs.</p>}
      {error && <p className="error">{error.message}</p>}
    </div>
  );
}
