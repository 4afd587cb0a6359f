// Agreement between the results of one unit. A unit holds at most maxInstances results
// (a handful), so comparing a new result with each earlier one is cheap.

import { outputsAgree } from "./compare.js";
import type { UnitRecord, UnitResult } from "./records.js";
import type { Comparator } from "./types.js";

/**
 * Two results are the same answer. Digests are hashes of the canonical output, so equal
 * digests settle it; a tolerance comparator looks at the outputs when they differ.
 */
export function resultsAgree(a: UnitResult, b: UnitResult, comparator: Comparator): boolean {
  if (a.digest === b.digest) return true;
  return comparator.kind === "tolerance" && outputsAgree(a.output, b.output, comparator);
}

/**
 * Adds a result to the unit's list and keeps every result's `agree` count (the size of the
 * group centred on it) and the unit's `best` (the largest group) up to date in O(results).
 */
export function addAgreement(unit: UnitRecord, results: UnitResult[], r: UnitResult, comparator: Comparator): void {
  let best = unit.best;
  for (let i = 0; i < results.length; i++) {
    const other = results[i] as UnitResult;
    if (resultsAgree(other, r, comparator)) {
      other.agree++;
      r.agree++;
      if (other.agree > best) best = other.agree;
    }
  }
  results.push(r);
  unit.best = r.agree > best ? r.agree : best;
}

/** The centre of the largest group: most agreeing results, the earliest on a tie. */
export function quorumCentre(results: readonly UnitResult[]): UnitResult {
  let centre = results[0] as UnitResult;
  for (let i = 1; i < results.length; i++) {
    const r = results[i] as UnitResult;
    if (r.agree > centre.agree) centre = r;
  }
  return centre;
}

/** How many different answers, grouping each result with the first earlier one it agrees with. */
export function countAnswers(results: readonly UnitResult[], comparator: Comparator): number {
  const firsts: UnitResult[] = [];
  for (const r of results) {
    if (!firsts.some((f) => resultsAgree(f, r, comparator))) firsts.push(r);
  }
  return firsts.length;
}

/** Why a unit cannot reach its quorum, for the job's error message. */
export function describeNoQuorum(unit: UnitRecord): string {
  const job = unit.job;
  const results = unit.results ?? [];
  const n = results.length;
  const parts = [plural(n, "result")];
  if (n > 1) {
    const answers = countAnswers(results, job.comparator);
    if (answers === 1) parts.push("all agreeing");
    else if (answers === n) parts.push(`${answers} different answers`);
    else parts.push(`${answers} different answers, at most ${unit.best} agreeing`);
  }
  if (unit.errors > 0) parts.push(plural(unit.errors, "error"));
  return `no quorum for unit ${unit.spec.index}: ${parts.join(", ")} (quorum ${job.quorum}, at most ${job.maxInstances} instances)`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
