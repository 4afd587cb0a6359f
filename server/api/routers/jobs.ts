import { z } from "zod";
import { TRPCError } from "@trpc/server";
import { kernels } from "../../../worker/kernels";
import { deleteJob } from "../../services/jobs/deleteJob";
import { router, protectedProcedure, publicProcedure } from "../trpc";
import { estimateJob, submitInputSchema, submitJobOnce, type SubmitInput } from "../../services/jobs/submit";
import { idempotencyKeySchema } from "../../services/jobs/idempotency";
import { acceptUnconfirmed, cancelJob, stopAfterRound, getJob, listJobs, setReplication } from "../../services/jobs/queries";
import { jobResultJson, unitOutputs } from "../../services/jobs/downloads";
import { submissionAllowed, admitSubmission } from "../../services/jobs/submissionRate";
import { changes } from "../changes";
import { RateLimiter } from "../../services/calc/rateLimit";

interface ParamsSchema {
  properties?: Record<string, { type?: string; default?: unknown; minimum?: number; maximum?: number; description?: string }>;
}

const jobId = z.object({ id: z.string().min(1).max(64) });

/**
 * jobs.watch per account: this many at once (a person's open job pages), started at most
 * WATCH_STARTS_PER_SECOND (WATCH_BURST at once). Each sends a whole snapshot when it starts,
 * every round of the job, then one up to five times a second: one account's 1,024 watches of
 * a 2,000-round job (375 KB a snapshot) held the server's loop for 30 s.
 */
export const MAX_WATCHES_PER_ACCOUNT = 16;
const WATCH_STARTS_PER_SECOND = 2;
const WATCH_BURST = 16;
const watchStarts = new RateLimiter(WATCH_STARTS_PER_SECOND, WATCH_BURST);
const watches = new Map<string, number>();

/** The Idempotency-Key header as the submission's key; with the field too, both must agree. */
function withHeaderKey(input: SubmitInput, header: string | undefined): SubmitInput {
  if (header === undefined) return input;
  const key = idempotencyKeySchema.safeParse(header);
  if (!key.success) throw new TRPCError({ code: "BAD_REQUEST", message: `Idempotency-Key header: ${key.error.issues[0]!.message}` });
  if (input.idempotencyKey !== undefined && input.idempotencyKey !== key.data) {
    throw new TRPCError({ code: "BAD_REQUEST", message: "The Idempotency-Key header and the idempotencyKey field differ: send one key." });
  }
  return { ...input, idempotencyKey: key.data };
}

export const jobsRouter = router({
  kernels: publicProcedure.query(() =>
    Object.values(kernels).map((k) => ({
      name: k.name, title: k.title, description: k.description,
      // The portal renders the parameter form from this, so a new kernel needs no UI code.
      params: z.toJSONSchema(k.params, { io: "input", unrepresentable: "any" }) as ParamsSchema,
    })),
  ),
  estimate: publicProcedure.input(submitInputSchema).query(({ ctx, input }) => estimateJob(ctx.deps, input, ctx.user?.id ?? null)),
  submit: protectedProcedure.input(submitInputSchema).mutation(async ({ ctx, input }) => {
    input = withHeaderKey(input, ctx.idempotencyKey);
    if (!(await submissionAllowed(ctx.deps, ctx.user.id))) {
      const { SUBMISSIONS_PER_SECOND: rate, SUBMISSION_BURST: burst } = ctx.deps.env;
      throw new TRPCError({
        code: "TOO_MANY_REQUESTS",
        message: `Too many job submissions: at most ${rate} a second (${burst} at once) per account. Wait a moment and try again.`,
      });
    }
    const admitted = await admitSubmission(ctx.deps, () => submitJobOnce(ctx.deps, ctx.user.id, input));
    if (!admitted) throw new TRPCError({ code: "TOO_MANY_REQUESTS", message: "The server is busy with other submissions. Try again in a moment." });
    return admitted.value;
  }),
  list: protectedProcedure
    .input(z.object({ limit: z.number().int().min(1).max(200).default(50) }).default({ limit: 50 }))
    .query(({ ctx, input }) => listJobs(ctx.deps, ctx.user, input)),
  get: protectedProcedure
    .input(jobId.extend({ roundsAfter: z.number().int().min(0).max(1_000_000).optional() }))
    .query(({ ctx, input }) => getJob(ctx.deps, ctx.user, input.id, { roundsAfter: input.roundsAfter })),
  result: protectedProcedure.input(jobId).query(async ({ ctx, input }) => {
    const json = await jobResultJson(ctx.deps, ctx.user, input.id);
    return json === null ? null : (JSON.parse(json) as unknown);
  }),
  unitOutputs: protectedProcedure.input(jobId).query(({ ctx, input }) => unitOutputs(ctx.deps, ctx.user, input.id)),
  cancel: protectedProcedure.input(jobId).mutation(({ ctx, input }) => cancelJob(ctx.deps, ctx.user, input.id)),
  delete: protectedProcedure.input(jobId).mutation(({ ctx, input }) => deleteJob(ctx.deps, ctx.user, input.id)),
  /** Take the results that wait for a confirming copy as they are. */
  stopAfterRound: protectedProcedure.input(jobId).mutation(({ ctx, input }) => stopAfterRound(ctx.deps, ctx.user, input.id)),
  acceptUnconfirmed: protectedProcedure.input(jobId).mutation(({ ctx, input }) => acceptUnconfirmed(ctx.deps, ctx.user, input.id)),
  /** Lower the copies per unit (and the quorum) of a running job. */
  setReplication: protectedProcedure
    .input(jobId.extend({ replicas: z.number().int().min(1).max(10), quorum: z.number().int().min(1).max(10).optional() }))
    .mutation(({ ctx, input }) => setReplication(ctx.deps, ctx.user, input)),
  /** Live job snapshots until the job ends; the first one is sent at once. */
  watch: protectedProcedure.input(jobId).subscription(async function* ({ ctx, input, signal }) {
    const account = ctx.user.id;
    const open = watches.get(account) ?? 0;
    if (open >= MAX_WATCHES_PER_ACCOUNT) {
      throw new TRPCError({ code: "TOO_MANY_REQUESTS", message: `You are watching ${open} jobs live, the most one account may; close a job's page first.` });
    }
    if (!watchStarts.take(account)) throw new TRPCError({ code: "TOO_MANY_REQUESTS", message: "Too many job watches started; try again in a few seconds." });
    // Listening before the first read: a change between the two is not missed.
    const updates = changes(ctx.deps.coordinator, "job", (id: string) => id === input.id, { signal, minGapMs: 200 });
    watches.set(account, open + 1);
    try {
      // After the first, each update carries only the rounds after the last ended one it sent
      // (`roundsAfter`): the page keeps the others. A long job's rounds come a page at a time,
      // one update each, before any wait for a change.
      let job = await getJob(ctx.deps, ctx.user, input.id);
      let after: number | undefined;
      for (;;) {
        yield job;
        after = job.rounds.filter((r) => r.finishedAt !== null).at(-1)?.round ?? after;
        if (!job.roundsMore) {
          if (job.state !== "running") return;
          if ((await updates.next()).done) return;
        }
        job = await getJob(ctx.deps, ctx.user, input.id, { roundsAfter: after });
      }
    } finally {
      updates.close();
      const left = (watches.get(account) ?? 1) - 1;
      if (left > 0) watches.set(account, left);
      else watches.delete(account);
    }
  }),
});
