import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { collectInputsOf, deleteUnnamedBlobs } from "../programs/files";
import { ownedJob, type Viewer } from "./queries";

/**
 * The owner deletes an ended job: its units, results, rounds and merged result go, its stored
 * inputs and outputs leave the account's budgets, and its ledger entries stay (the books keep
 * every credit that moved, by job id). A running job is cancelled first.
 */
export async function deleteJob(deps: AppDeps, viewer: Viewer, jobId: string): Promise<{ id: string; deleted: true }> {
  const job = await ownedJob(deps, viewer, jobId);
  if (job.ownerId !== viewer.id) throw new UserError("FORBIDDEN", "Only the job's owner may delete it.");
  if (job.state === "running") throw new UserError("CONFLICT", `Job ${jobId} is still running: cancel it first.`);
  const row = await deps.db.job.findUnique({ where: { id: jobId }, select: { inputBytes: true, resultBlob: true } });
  if (!row) throw new UserError("NOT_FOUND", `No job ${jobId}.`);
  if (row.inputBytes > 0) await collectInputsOf(deps, [jobId]);
  const deleted = await deps.db.$transaction(async (tx) => {
    // Unless a backtrack reopened it meanwhile (a host of it was caught cheating).
    const gone = await tx.job.deleteMany({ where: { id: jobId, state: { not: "running" } } });
    if (!gone.count) return false;
    // Results have no foreign key on PostgreSQL (hot inserts): not cascaded with the units.
    await tx.result.deleteMany({ where: { jobId } });
    await tx.workUnit.deleteMany({ where: { jobId } });
    await tx.slice.deleteMany({ where: { jobId } });
    return true;
  });
  if (!deleted) throw new UserError("CONFLICT", `Job ${jobId} is running again: cancel it first.`);
  if (row.resultBlob) await deleteUnnamedBlobs(deps, [row.resultBlob]);
  return { id: jobId, deleted: true };
}
