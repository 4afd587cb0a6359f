"use client";
import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";
import { when } from "../../_components/format";

export default function PricingPage() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const pricing = useQuery(trpc.pricing.get.queryOptions());
  const [value, setValue] = useState("");
  const set = useMutation(trpc.pricing.set.mutationOptions({ onSuccess: () => (setValue(""), queryClient.invalidateQueries()) }));
  return (
    <div className="card">
      <h2>Pricing</h2>
      <p>
        Current price: <strong data-testid="price">{pricing.data ? pricing.data.pricePerCpuSecond : "…"}</strong>{" "}
        {pricing.data?.pricePerCpuSecond === 1 ? "credit" : "credits"} per reference
        CPU-second (RCS){pricing.data?.updatedAt ? `, set ${when(pricing.data.updatedAt)}` : ` (the default, PRICE_PER_CPU_SECOND = ${pricing.data?.defaultPrice ?? "…"})`}.
      </p>
      <form
        className="row"
        onSubmit={(e) => {
          e.preventDefault();
          set.mutate({ pricePerCpuSecond: Number(value) });
        }}
      >
        <input type="number" step="any" min="0" placeholder="credits per RCS" value={value} onChange={(e) => setValue(e.target.value)} />
        <button type="submit" disabled={!value || set.isPending}>Set price</button>
      </form>
      {set.error && <p className="error">{set.error.message}</p>}
      <p className="hint">
        Applies to jobs submitted from now on: estimates and escrow holds use it; running jobs keep the price they were submitted at.
        An RCS is one second of CPU on the reference machine (benchmark score 1.0). See docs/pricing.md.
      </p>
    </div>
  );
}
