"use client";
import Link from "next/link";
import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "../_components/trpc";
import { creditCount, credits, when } from "../_components/format";
import { useRequireSignIn } from "../_components/useRequireSignIn";
import { ApiKeys } from "./ApiKeys";
import { Hosts } from "./Hosts";
import { TeamAndHistory } from "./TeamAndHistory";
import { WatchAd } from "./WatchAd";

const KIND_LABEL: Record<string, string> = {
  grant: "Grant", hold: "Held for a job", payout: "Earned computing", refund: "Unused escrow refunded", claim: "Claimed from a volunteer id", ad: "Watched an ad",
};

export default function AccountPage() {
  const trpc = useTRPC();
  const ready = useRequireSignIn();
  const ledger = useQuery({ ...trpc.account.ledger.queryOptions({ limit: 100 }), enabled: ready, refetchInterval: 5000 });
  if (!ready) return null;
  return (
    <div className="stack">
      <div className="card">
        <h2>Balance</h2>
        <p className="balance" data-testid="account-balance">{ledger.data ? creditCount(ledger.data.balance) : "… credits"}</p>
        <p className="hint">Credits pay for jobs; you earn them by volunteering on the <Link href="/volunteer">volunteer page</Link>, or by watching an ad.</p>
      </div>
      <WatchAd />
      <TeamAndHistory />
      <Hosts />
      <div className="two-col">
        <ApiKeys />
        <div className="card">
          <h2>Ledger</h2>
          {ledger.data?.entries.length ? (
            <table>
              <thead><tr><th>When</th><th>What</th><th>Job</th><th className="num">Credits</th></tr></thead>
              <tbody>
                {ledger.data.entries.map((e) => (
                  <tr key={e.id}>
                    <td className="nowrap">{when(e.createdAt)}</td>
                    <td>{KIND_LABEL[e.kind] ?? e.kind}</td>
                    <td>{e.jobId ? <Link href={`/jobs/${e.jobId}`}>{e.jobId}</Link> : ""}</td>
                    <td className={`num ${e.amount < 0 ? "neg" : "pos"}`}>{e.amount > 0 ? "+" : ""}{credits(e.amount)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p className="hint">No entries yet.</p>
          )}
        </div>
      </div>
    </div>
  );
}
