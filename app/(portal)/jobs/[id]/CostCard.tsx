"use client";
import { credits, times } from "../../../_components/format";

interface Work { validResults: number; estimatedMs: number; measuredResults: number; measuredMs: number; estimatedMeasuredMs: number; effectivePrice: number | null }

const rcs = (ms: number) => (ms / 1000).toLocaleString("en-US", { maximumFractionDigits: 3 });

/** Actual vs estimated cost and work, in reference CPU-seconds (see docs/pricing.md). */
export function CostCard({ job }: { job: { estimate: number; cost: number; price: number; work: Work } }) {
  const w = job.work;
  const ratio = w.estimatedMeasuredMs > 0 ? w.measuredMs / w.estimatedMeasuredMs : null;
  return (
    <div className="card" data-testid="job-cost">
      <h3>Cost: actual vs estimated</h3>
      <dl className="stats">
        <div><dt>Held (estimate)</dt><dd>{credits(job.estimate)}</dd></div>
        <div><dt>Paid so far</dt><dd data-testid="cost-paid">{credits(job.cost)}</dd></div>
        <div><dt>Estimated work</dt><dd>{rcs(w.estimatedMs)} RCS</dd></div>
        <div><dt>Measured work</dt><dd>{w.measuredResults ? `${rcs(w.measuredMs)} RCS` : "—"}</dd></div>
        <div><dt>Price</dt><dd>{credits(job.price)} / RCS</dd></div>
        <div><dt>Effective price</dt><dd>{w.effectivePrice === null ? "—" : `${credits(Math.round(w.effectivePrice))} / RCS`}</dd></div>
      </dl>
      <p className="hint">
        RCS = reference CPU-second: a second of CPU on the reference machine. Volunteers are paid on each unit&apos;s estimated
        work once it is validated ({w.validResults} valid results so far); the measured work is what the hosts reported, scaled by
        their benchmark{ratio === null ? "" : `, ${times(ratio)} the estimate for the same results`}.
      </p>
    </div>
  );
}
