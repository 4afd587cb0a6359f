"use client";
import { useEffect, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";
import { credits } from "../../_components/format";
import { WatchAd } from "../../account/WatchAd";
import { costBreakdown, replicationText } from "./estimateText";

/** Debounces a value so typing in a form doesn't send an estimate per keystroke. */
export function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return v;
}

type EstimateInput = Parameters<ReturnType<typeof useTRPC>["jobs"]["estimate"]["queryOptions"]>[0];

/**
 * The server's estimate of a submission (null while the form cannot describe one yet) and
 * the signed-in user's balance. `blocked` says why the job cannot be submitted as it is.
 */
export function useEstimate(input: EstimateInput | null) {
  const trpc = useTRPC();
  const debounced = useDebounced(input, 250);
  const estimate = useQuery({ ...trpc.jobs.estimate.queryOptions(debounced as EstimateInput), retry: false, enabled: debounced !== null });
  const balance = useQuery(trpc.account.balance.queryOptions());
  const short = !!estimate.data && balance.data !== undefined && estimate.data.estimate > balance.data;
  const blocked = estimate.error ? estimate.error.message : short ? "Your balance is too low for this job." : null;
  return { estimate, balance, short, blocked };
}

/** The estimate, where it comes from, the balance it is held from, and what happens to it. */
export function EstimateCard({ state, testId }: { state: ReturnType<typeof useEstimate>; testId: string }) {
  const { estimate, balance, short } = state;
  const e = estimate.data;
  return (
    <div className="estimate stack" aria-live="polite">
      {estimate.error ? (
        <span className="error">{estimate.error.message}</span>
      ) : e ? (
        <>
          <span className="hint" data-testid={`${testId}-replication`}>{replicationText(e)}</span>
          <span>
            Estimated cost <strong data-testid={testId}>{credits(e.estimate)} credits</strong> at most:{" "}
            <span data-testid={`${testId}-breakdown`}>{costBreakdown(e)}</span>.
          </span>
          <span className="hint">
            Held from your balance
            {balance.data !== undefined && <> of <strong data-testid={`${testId}-balance`}>{credits(balance.data)} credits</strong></>} until
            the job ends; what it does not spend is refunded.
          </span>
        </>
      ) : (
        <span className="hint">Estimating…</span>
      )}
      {short && (
        <>
          <p className="error" data-testid={`${testId}-short`}>
            Your balance is too low for this job: volunteer for a while to earn credits, watch an ad, or make it smaller.
          </p>
          <WatchAd compact />
        </>
      )}
    </div>
  );
}
