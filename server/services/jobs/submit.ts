import crypto from "node:crypto";
import { z } from "zod";
import { getKernel, kernels } from "../../../worker/kernels";
import type { Kernel } from "../../../worker/kernels/types";
import { InsufficientCredits, postTransaction } from "../credits/ledger";
import { escrowAccount, MILLI, userAccount } from "../credits/accounts";
import { UserError } from "../errors";
import type { AppDeps } from "../deps";

export const replicationSchema = z
  .object({
    /** R: instances of each unit computed by different volunteers. */
    replicas: z.number().int().min(1, "At least 1 replica.").max(10, "At most 10 replicas.").default(2),
    /** Q: agreeing results needed; by default 2, or a majority when R > 2. */
    quorum: z.number().int().min(1).max(10).optional(),
    /** M: most instances ever issued for one unit, after disagreements and errors. */
    maxReplicas: z.number().int().min(1).max(20).optional(),
    /** Let hosts with a long record of valid results compute units alone (with spot checks). */
    adaptive: z.boolean().default(true),
    /** Compare floating-point outputs within a tolerance instead of exactly. */
    tolerance: z.object({ relative: z.number().min(0).max(0.1), absolute: z.number().min(0).max(1e6).default(0) }).optional(),
  })
  .transform((r) => {
    const quorum = r.quorum ?? (r.replicas <= 2 ? r.replicas : Math.floor(r.replicas / 2) + 1);
    return { ...r, quorum, maxReplicas: r.maxReplicas ?? Math.min(20, r.replicas + 3) };
  })
  .refine((r) => r.quorum <= r.replicas, { message: "The quorum cannot exceed the number of replicas." })
  .refine((r) => r.replicas <= r.maxReplicas, { message: "maxReplicas must be at least the number of replicas." });

export const submitInputSchema = z.object({
  kernel: z.string().min(1).max(64),
  params: z.record(z.string(), z.unknown()).default({}),
  chunks: z.number().int("The chunk count must be a whole number.").min(1, "A job needs at least 1 chunk."),
  replication: replicationSchema.prefault({}),
});
export type SubmitInput = z.infer<typeof submitInputSchema>;

interface Plan {
  kernel: Kernel;
  replication: SubmitInput["replication"];
  params: Record<string, unknown>;
  units: Array<{ input: unknown; work: number; pay: number }>;
  /** Millicredits per reference CPU-second. */
  price: number;
  estimate: number;
}

/** Validates a submission and prices it, without side effects (the portal's estimate uses it too). */
export function planJob(deps: Pick<AppDeps, "env">, input: SubmitInput): Plan {
  const kernel = getKernel(input.kernel);
  if (!kernel) {
    throw new UserError("BAD_REQUEST", `Unknown kernel "${input.kernel}". Available: ${Object.keys(kernels).join(", ")}.`);
  }
  const parsed = kernel.params.safeParse(input.params);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new UserError("BAD_REQUEST", `Invalid ${kernel.name} parameter ${i.path.join(".") || ""}: ${i.message}`.replace("  ", " "));
  }
  const params = { ...(parsed.data as Record<string, unknown>) };
  // Seeded kernels get a fixed seed at submit, so every replica of a unit computes the same thing.
  if ("seed" in (kernel.params as unknown as { shape: object }).shape && params.seed === undefined) {
    params.seed = crypto.randomInt(0, 2 ** 31);
  }
  const maxChunks = Math.min(deps.env.MAX_CHUNKS, kernel.maxChunks(params));
  if (input.chunks > maxChunks) {
    throw new UserError("BAD_REQUEST", `Too many chunks: ${input.chunks}. This ${kernel.name} job can be split into at most ${maxChunks}.`);
  }
  const price = Math.round(deps.env.PRICE_PER_CPU_SECOND * MILLI);
  const units = kernel.split(params, input.chunks).map((u) => ({
    ...u,
    // Paid per unit on the estimated work, not the volunteer's own (untrusted) timing.
    pay: Math.max(1, Math.ceil((u.work * price) / 1000)),
  }));
  // The most a job can cost: every unit paid to a full quorum of volunteers.
  const estimate = units.reduce((s, u) => s + u.pay, 0) * input.replication.quorum;
  return { kernel, params, units, price, estimate, replication: input.replication };
}

export function estimateJob(deps: Pick<AppDeps, "env">, input: SubmitInput) {
  const plan = planJob(deps, input);
  const work = plan.units.reduce((s, u) => s + u.work, 0);
  return {
    kernel: plan.kernel.name, chunks: plan.units.length, cpuSeconds: work / 1000, price: plan.price, estimate: plan.estimate,
    replicas: plan.replication.replicas, quorum: plan.replication.quorum,
  };
}

export async function submitJob(deps: AppDeps, ownerId: string, input: SubmitInput) {
  const plan = planJob(deps, input);
  const id = `j${crypto.randomBytes(9).toString("base64url").replace(/[-_]/g, "x")}`;
  const leaseMs = Math.round(deps.env.LEASE_SECONDS * 1000);
  const units = plan.units.map((u, idx) => ({ id: `${id}.${idx}`, idx, ...u }));
  try {
    await deps.db.$transaction(async (tx) => {
      await tx.job.create({
        data: {
          id, ownerId, kernel: plan.kernel.name, params: JSON.stringify(plan.params), chunks: units.length,
          price: plan.price, estimate: plan.estimate, leaseMs,
          replicas: plan.replication.replicas, quorum: plan.replication.quorum, maxReplicas: plan.replication.maxReplicas,
          adaptive: plan.replication.adaptive, tolerance: plan.replication.tolerance ? JSON.stringify(plan.replication.tolerance) : null,
        },
        select: { id: true },
      });
      await tx.workUnit.createMany({
        data: units.map((u) => ({ id: u.id, jobId: id, idx: u.idx, input: JSON.stringify(u.input), work: Math.round(u.work), pay: u.pay })),
      });
      await postTransaction(tx, "hold", [
        { accountId: userAccount(ownerId), amount: -plan.estimate },
        { accountId: escrowAccount(id), amount: plan.estimate },
      ], { jobId: id, memo: `escrow for ${plan.kernel.name} job` });
    });
  } catch (e) {
    if (e instanceof InsufficientCredits) {
      throw new UserError("PAYMENT_REQUIRED", `${e.message} Volunteer some CPU time to earn credits, or submit fewer or smaller chunks.`);
    }
    throw e;
  }
  deps.coordinator.addJob({
    id, kernel: plan.kernel.name, params: plan.params, leaseMs, maxErrors: 3,
    units: units.map((u) => ({ id: u.id, index: u.idx, input: u.input, work: u.work })),
    ...replicationSpec(plan.replication),
  }, ownerId, new Map(units.map((u) => [u.id, u.pay])));
  return { id, estimate: plan.estimate, chunks: units.length };
}

/** The scheduler's view of a job's replication settings (also rebuilt from a job row at recovery). */
export function replicationSpec(r: { replicas: number; quorum: number; maxReplicas: number; adaptive: boolean; tolerance?: { relative: number; absolute: number } | null }) {
  return {
    replication: { target: r.replicas, quorum: r.quorum, maxInstances: r.maxReplicas },
    adaptive: r.adaptive,
    comparator: r.tolerance ? { kind: "tolerance" as const, ...r.tolerance } : { kind: "exact" as const },
  };
}
