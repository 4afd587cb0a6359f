// One read of the hot store: what a round's step reads of its round and job that may change.

/** The round's starting state and times, and its job's stop flag (the owner may ask for a stop at any time). */
export type RoundRow = { state: string; startedAt: Date; finishedAt: Date | null; stopAfterRound: boolean };

/** The SQL both stores read it with, given the placeholders of the job's id and the round (`?`, `$1`…). */
export const roundRowSql = (jobId: string, round: string) => `SELECT r."state", r."startedAt", r."finishedAt", j."stopAfterRound"
  FROM "JobRound" r JOIN "Job" j ON j."id" = r."jobId" WHERE r."jobId" = ${jobId} AND r."round" = ${round}`;

type Stamp = string | Date;

export type RoundSqlRow = { state: string; startedAt: Stamp; finishedAt: Stamp | null; stopAfterRound: boolean | number };

/** A row of roundRowSql as a RoundRow (SQLite returns times as text and booleans as 0/1). */
export function roundRow(r: RoundSqlRow | undefined): RoundRow | undefined {
  return r && { state: r.state, startedAt: new Date(r.startedAt), finishedAt: r.finishedAt === null ? null : new Date(r.finishedAt), stopAfterRound: !!r.stopAfterRound };
}
