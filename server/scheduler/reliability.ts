// Host and account track records. The scheduler owns the live copies; the coordinator
// seeds them from the database and persists them after validations and errors.

import type { ReliabilityRecord } from "./types.js";

export function emptyRecord(): ReliabilityRecord {
  return { consecutiveValid: 0, valid: 0, invalid: 0, errors: 0, turnaroundMsTotal: 0, turnaroundCount: 0 };
}

/** A private copy, so neither the caller's object nor ours can change behind the other's back. */
export function copyRecord(r: ReliabilityRecord): ReliabilityRecord {
  return {
    consecutiveValid: r.consecutiveValid,
    valid: r.valid,
    invalid: r.invalid,
    errors: r.errors,
    turnaroundMsTotal: r.turnaroundMsTotal,
    turnaroundCount: r.turnaroundCount,
    ...(r.spotChecks ? { spotChecks: r.spotChecks } : {}),
    ...(r.suspect ? { suspect: r.suspect } : {}),
  };
}

/** A result agreed with its unit's quorum. Turnaround is unknown for results recovered after a restart. */
export function creditValid(r: ReliabilityRecord, turnaroundMs: number | undefined): void {
  r.consecutiveValid++;
  r.valid++;
  if (turnaroundMs !== undefined) {
    r.turnaroundMsTotal += turnaroundMs;
    r.turnaroundCount++;
  }
}

/** A result disagreed with its unit's quorum: the streak that earns adaptive replication ends. */
export function chargeInvalid(r: ReliabilityRecord): void {
  r.consecutiveValid = 0;
  r.invalid++;
}

/** The kernel threw (or the output was malformed): the streak ends too. */
export function chargeError(r: ReliabilityRecord): void {
  r.consecutiveValid = 0;
  r.errors++;
}

/** The server recomputed one of the host's results and found it right. */
export function passSpotCheck(r: ReliabilityRecord): void {
  r.spotChecks = (r.spotChecks ?? 0) + 1;
  r.suspect = 0;
}
