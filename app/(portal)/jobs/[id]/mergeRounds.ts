/**
 * An iterative job's rounds, as the job page holds them: an update of `jobs.watch` carries
 * only the rounds after its `roundsAfter` (a job may run 10,000 of them), so the rounds up to
 * that one come from what the page held before. An update without `roundsAfter` has them all.
 */
export function mergeRounds<R extends { round: number }>(held: R[], update: { rounds: R[]; roundsAfter: number | null }): R[] {
  const after = update.roundsAfter;
  if (after === null) return update.rounds;
  return [...held.filter((r) => r.round <= after), ...update.rounds];
}
