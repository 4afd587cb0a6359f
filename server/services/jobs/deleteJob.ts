import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { inputBlobsOf, removeInputBlobs } from "../programs/files";
import { visibleJob, type Viewer } from "./queries";

/**
 * The owner deletes an ended job: its inputs and outputs go (its units', results' and rounds'
 * contents, its merged result), they leave the account's budgets, and the job reads as missing
 * from then on. Its rows stay, emptied: the ledger's entries name it, and its results are the
 * volunteers' record (the leaderboards count them). A running job is cancelled first.
 */
export async function deleteJob(deps: AppDeps, viewer: Viewer, jobId: string): Promise<{ id: string; deleted: true }> {
  const row = visibleJob(await deps.db.job.findUnique({
    where: { id: jobId }, select: { ownerId: true, state: true, deletedAt: true, inputBytes: true, resultBlob: true, params: true, programHash: true },
  }), viewer, jobId);
  if (row.ownerId !== viewer.id) throw new UserError("FORBIDDEN", "Only the job's owner may delete it.");
  if (row.state === "running") throw new UserError("CONFLICT", `Job ${jobId} is still running: cancel it first.`);
  // Read before the rows are emptied, removed once the job is marked: a job deleted cannot run
  // again (a backtrack reopens a completed job only while it keeps its inputs, backtrackSql.ts).
  const inputs = row.inputBytes > 0 ? await inputBlobsOf(deps, [jobId]) : [];
  const deleted = await deps.db.$transaction(async (tx) => {
    // Unless a backtrack reopened it meanwhile (a host of it was caught cheating), or another delete came first.
    const marked = await tx.job.updateMany({
      where: { id: jobId, state: { not: "running" }, deletedAt: null },
      data: { deletedAt: new Date(), result: null, resultBlob: null, outputBytes: 0, inputBytes: 0, ...(row.programHash ? { params: withoutOwnParams(row.params) } : {}) },
    });
    if (!marked.count) return false;
    await tx.result.updateMany({ where: { jobId }, data: { output: null } });
    await tx.workUnit.updateMany({ where: { jobId }, data: { output: null, input: "null" } });
    await tx.jobRound.updateMany({ where: { jobId }, data: { state: "null", next: null } });
    return true;
  });
  if (!deleted) throw new UserError("CONFLICT", `Job ${jobId} could not be deleted: it is running again, or was just deleted.`);
  // The merged result's blob too, unless something else names it: its bytes may be another
  // job's input (blobs are named by their content), and deleting it failed that job.
  const candidates = [...inputs.map((i) => i.hash), ...(row.resultBlob ? [row.resultBlob] : [])];
  if (candidates.length) await removeInputBlobs(deps, candidates, [jobId]);
  return { id: jobId, deleted: true };
}

/** A program job's params without the consumer's own (up to a megabyte each); what the server put there stays. */
function withoutOwnParams(params: string): string {
  return JSON.stringify({ ...(JSON.parse(params) as Record<string, unknown>), params: {} });
}
