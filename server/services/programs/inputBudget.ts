import { formatBytes } from "../../http/body";

/**
 * A job's stored inputs do not fit its owner's input budget (ACCOUNT_STORAGE_BYTES of inputs):
 * thrown by the transaction that inserts the job (batchSql.ts, batchPg.ts), where the check and
 * the insert are one step however many submissions, on however many nodes, come at once.
 */
export class InputBudgetExceeded extends Error {
  constructor(held: number, quota: number, bytes: number) {
    super(
      `Your jobs' inputs take ${formatBytes(held)} of your ${formatBytes(quota)}; this job's ${formatBytes(bytes)} of inputs do not fit. ` +
        "A cancelled or failed job's inputs are removed within a minute of its end, a completed job's a day after it.",
    );
    this.name = "InputBudgetExceeded";
  }
}

/** The SQL (both engines' placeholders are given) that sums what an owner's jobs' inputs hold. */
export const INPUTS_HELD_SQL = (placeholder: string) =>
  `SELECT COALESCE(SUM("inputBytes"), 0) AS "n" FROM "Job" WHERE "ownerId" = ${placeholder} AND "inputBytes" > 0`;
