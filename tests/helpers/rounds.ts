import type { Db } from "../../server/store/prisma";

/**
 * Replaces a job's rounds with `total` of them written straight to the database, the last one
 * still running: a job of more rounds than any kernel may run, to test how they are read and
 * shown. Each has a metric of 1/round and `stat` in its stats.
 */
export async function writeRounds(db: Db, jobId: string, total: number, stat = "loss") {
  const at = new Date();
  await db.jobRound.deleteMany({ where: { jobId } });
  const rows = Array.from({ length: total }, (_, i) => ({
    jobId, round: i + 1, state: "{}", next: "{}", metric: 1 / (i + 1), stats: JSON.stringify({ [stat]: 1 / (i + 1) }),
    startedAt: at, finishedAt: i + 1 < total ? at : null, latencyMs: i + 1 < total ? 20 : null,
  }));
  for (let i = 0; i < rows.length; i += 500) await db.jobRound.createMany({ data: rows.slice(i, i + 500) });
}
