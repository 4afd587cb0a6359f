// Credibility-based fault tolerance (Sarmenta, "Sabotage-tolerance mechanisms for volunteer
// computing systems", 2002), adapted: each host's credibility comes from its verified record,
// a result group's credibility from its members' and from the groups that disagree with it,
// and a unit is accepted without a check only when its group is credible enough. Pure
// functions over plain records: no I/O, no clock, no randomness.

import type { ReliabilityRecord } from "./types.js";

export interface TrustPolicy {
  /** f: the share of hosts assumed to be saboteurs (an upper bound), 0 < f < 1. */
  faultRate: number;
  /** θ: a unit's agreeing group must be at least this credible to be accepted unchecked. */
  threshold: number;
  /** Spot-check rate of a host with a long verified record (the floor). */
  minSpotRate: number;
  /** Quorums agreed that count as one passed spot-check (weaker evidence). */
  agreementsPerCheck: number;
  /**
   * A result that comes back in less than this share of the time the host's own benchmark
   * needs for the unit's estimated work is implausible: the host is checked on its next results.
   */
  plausibleShare: number;
  /** Units shorter than this (expected ms on the host) are too small to judge by their timing. */
  minPlausibleMs: number;
  /**
   * Results of a verified host that may wait for a verdict (for their replicas) while it
   * starts new units; past that it only takes copies of started units, which bring its results
   * to a verdict. A sleeper that turns to faking after building a record runs ahead of its
   * slower honest partners by at most this many fakes before one comes back and catches it.
   */
  maxUnverified: number;
}

export const DEFAULT_TRUST: Readonly<TrustPolicy> = Object.freeze({
  faultRate: 0.2,
  threshold: 0.999,
  minSpotRate: 0.05,
  agreementsPerCheck: 20,
  plausibleShare: 0.25,
  minPlausibleMs: 20,
  maxUnverified: 16,
});

/** Evidence that the host computes honestly: passed spot-checks, plus agreed quorums at a discount. */
export function verifiedCount(r: ReliabilityRecord, p: TrustPolicy): number {
  return (r.spotChecks ?? 0) + Math.floor(r.valid / p.agreementsPerCheck);
}

/**
 * A host's credibility, the probability that its results are right: 1 − f for a host never
 * verified, and 1 − f/(k·e) once it passed k spot-checks (Sarmenta's bound with blacklisting:
 * a saboteur caught once is banned, so surviving k checks is strong evidence).
 */
export function hostCredibility(r: ReliabilityRecord, p: TrustPolicy): number {
  const k = verifiedCount(r, p);
  return k > 0 ? 1 - p.faultRate / (k * Math.E) : 1 - p.faultRate;
}

/** Has passed at least one spot-check: may complete a unit's replicas without another such host. */
export function established(r: ReliabilityRecord): boolean {
  return (r.spotChecks ?? 0) > 0;
}

/**
 * Credibility of each group of agreeing results, given its members' credibilities:
 * P(group g right and every other group wrong) normalised over every way the groups can be
 * right or all wrong (results that disagree cannot both be right).
 */
export function groupCredibilities(groups: number[][]): number[] {
  const right = groups.map((g) => g.reduce((s, c) => s * c, 1));
  const wrong = groups.map((g) => g.reduce((s, c) => s * (1 - c), 1));
  const allWrong = wrong.reduce((s, w) => s * w, 1);
  const onlyRight = groups.map((_, i) => wrong.reduce((s, w, j) => (j === i ? s * right[i]! : s * w), 1));
  const total = allWrong + onlyRight.reduce((s, x) => s + x, 0);
  return onlyRight.map((x) => (total > 0 ? x / total : 0));
}

/**
 * Share of a host's accepted results the server re-checks: every one while its timing is
 * implausible, then falling with its verified record, 1/(1 + k), down to the floor.
 */
export function spotRate(r: ReliabilityRecord, p: TrustPolicy): number {
  if ((r.suspect ?? 0) > 0) return 1;
  return Math.max(p.minSpotRate, 1 / (1 + verifiedCount(r, p)));
}
