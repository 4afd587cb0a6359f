import type { WireTask } from "../../worker/protocol/messages";

// Ringers (Golle and Mironov, "Uncheatable distributed computations", 2001): tasks whose
// answer the server knows, sent to hosts it does not trust yet among their real tasks. A host
// that answers one wrong is caught as surely as by a spot-check, without a second volunteer.

/** Share of a host's task frames that carry a ringer, times its spot-check rate (1 for a newcomer). */
export const RINGER_SHARE = 0.25;

export interface Ringer {
  /** The socket it was sent to. */
  conn: string;
  jobId: string;
  /** The job's index-free description, for the ban reason. */
  kernel: string;
  /** The server's answer (its digest), computed while the volunteer works. */
  expected: Promise<string | undefined>;
}

/**
 * A unit input that the host cannot tell from the job's real ones: for pi a fresh seed with
 * the same number of samples (a new unit nobody else computes), for other kernels the input of
 * a random unit of the job (one of its replicas looks just the same).
 */
export function ringerInput(kernel: string, sample: unknown, random: () => number): unknown {
  if (kernel === "pi" && sample && typeof sample === "object" && "samples" in sample) {
    const seed = Math.floor(random() * 2 ** 21) * 2 ** 32 + Math.floor(random() * 2 ** 32);
    return { ...(sample as object), seed };
  }
  return sample;
}

/**
 * The job's params as its tasks carry them. A pi unit's input holds its own seed, derived
 * from the job's: sent the job's seed too, a host could derive every real unit's seed and
 * tell the ringer (a fresh seed) from them, answer it right and fake the rest.
 */
export function volunteerParams(kernel: string, params: unknown): unknown {
  if (kernel === "pi" && params && typeof params === "object" && "seed" in params) {
    const { seed: _seed, ...rest } = params as Record<string, unknown>;
    return rest;
  }
  return params;
}

/** Puts the ringer at a random place in the frame, so its position tells nothing. */
export function insertAtRandom(tasks: WireTask[], ringer: WireTask, random: () => number) {
  tasks.splice(Math.floor(random() * (tasks.length + 1)), 0, ringer);
}
