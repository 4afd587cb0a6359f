// The words of a job's estimate, shared by the kernel and the program forms. Pure, so the
// sentences are unit-tested against the replication settings they describe.

/** What `jobs.estimate` answers (amounts in millicredits). */
export interface EstimateFigures {
  estimate: number;
  /** Reference CPU-seconds of estimated work, every round included (replicas not). */
  cpuSeconds: number;
  chunks: number;
  /** Millicredits per reference CPU-second. */
  price: number;
  replicas: number;
  quorum: number;
  adaptive: boolean;
  maxRounds?: number;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** 0.02 s, 1.5 s, 12 s, 3,600 s: two significant figures below 10 s. */
export function seconds(s: number): string {
  if (!Number.isFinite(s)) return "—";
  if (s >= 10) return `${Math.round(s).toLocaleString("en-US")} s`;
  return `${Number(s.toPrecision(2))} s`;
}

/** Millicredits as credits: 1234 → "1.234". */
const credits = (millicredits: number) =>
  (millicredits / 1000).toLocaleString("en-US", { minimumFractionDigits: 0, maximumFractionDigits: 3 });

/**
 * How each unit is computed and how many of its results are paid: replicas R, quorum Q
 * (only the Q agreeing results are paid), and adaptive replication (a unit a trusted host
 * computes alone is paid once).
 */
export function replicationText({ replicas, quorum, adaptive }: Pick<EstimateFigures, "replicas" | "quorum" | "adaptive">): string {
  if (replicas === 1) return "Each unit is computed by one volunteer and accepted when its result comes back; you pay for that one result.";
  const accepted =
    quorum === 1 ? "as soon as one result comes back"
    : quorum === replicas ? (replicas === 2 ? "when both agree" : `when all ${replicas} agree`)
    : `when ${quorum} of them agree`;
  const paid = quorum === 1 ? "you pay for one result per unit" : `you pay for the ${quorum} agreeing results of each unit`;
  const alone = adaptive
    ? " Hosts with a long record of valid results may compute a unit alone (with random spot checks): such a unit is paid once."
    : "";
  return `Each unit is computed by ${replicas} different volunteers and accepted ${accepted}; ${paid}.${alone}`;
}

/**
 * Where the estimate comes from: units × paid results per unit × work per unit × price (× the
 * most rounds of an iterative job). Every unit's pay is rounded up to a millicredit.
 */
export function costBreakdown(e: EstimateFigures): string {
  const rounds = e.maxRounds ?? 1;
  const perUnit = e.chunks > 0 ? e.cpuSeconds / (e.chunks * rounds) : 0;
  const parts = [
    plural(e.chunks, "unit"),
    plural(e.quorum, "paid result"),
    `${seconds(perUnit)} of reference CPU per unit`,
    `${credits(e.price)} credit${e.price === 1000 ? "" : "s"} per reference CPU-second`,
  ];
  if (rounds > 1) parts.push(`up to ${plural(rounds, "round")}`);
  return parts.join(" × ");
}

/** The least CPU-seconds per unit the program form proposes (a unit's pay is rounded up to a millicredit anyway). */
export const MIN_CPU_SECONDS = 0.001;

/** A trial run's reference CPU-seconds as the form proposes them: two significant figures, rounded up, at least MIN_CPU_SECONDS. */
export function proposedCpuSeconds(cpuSeconds: number): number {
  const s = Math.max(MIN_CPU_SECONDS, cpuSeconds);
  const step = 10 ** (Math.floor(Math.log10(s)) - 1);
  return Number((Math.ceil(s / step - 1e-9) * step).toPrecision(2));
}
