import type { TaskRecord, UnitRecord, VolunteerRecord } from "./records.js";

// Copies of units held by quiet volunteers. A socket that takes tasks and then says nothing (a
// hoarder, a frozen tab, a machine that went to sleep) holds its units until their leases
// lapse: a minute for small units, while the job's last units and the volunteers who could
// compute them wait. A volunteer that has answered on its socket and still has room once the
// queues gave it what they could may take a copy of a unit whose every instance has been quiet
// this long; the first result wins and the other copy is revoked (speculative execution, as
// MapReduce's backup tasks, for holders that show no sign of work).

/** Least quiet time before a unit is copied, whatever its size. */
export const QUIET_MIN_MS = 10_000;
/** A unit's holder is quiet after this many times the unit's expected time on its host. */
export const QUIET_FACTOR = 4;
/**
 * A task held this many times its quiet time is copied however often its socket answers others:
 * an honest window (two tasks a thread) holds none so long, while a socket answering one of its
 * eight tasks every 9 s kept all eight from ever being quiet.
 */
export const QUIET_AGE_FACTOR = 2;
/** Most units one sweep offers as copies (a bound on what a hungry volunteer looks through). */
export const QUIET_COPIES_MAX = 256;

/** Since when the task's holder has said nothing: its lease or its last answer on this socket, whichever is later. */
export function quietSince(t: TaskRecord): number {
  const answered = t.volunteer.answeredAt;
  return answered !== undefined && answered > t.leasedAt ? answered : t.leasedAt;
}

/** How long a holder may be quiet on the unit before it is copied: its expected time on the host, times QUIET_FACTOR. */
export function quietAfter(u: UnitRecord, v: VolunteerRecord): number {
  return Math.max(QUIET_MIN_MS, (QUIET_FACTOR * u.spec.work) / v.speed);
}

/** Whether the task's holder has been quiet on it long enough for its unit to be copied: silent, or holding it far too long. */
export function isQuiet(t: TaskRecord, now: number): boolean {
  const after = quietAfter(t.unit, t.volunteer);
  return now - quietSince(t) >= after || now - t.leasedAt >= QUIET_AGE_FACTOR * after;
}

/**
 * Whether a copy of the unit may go out now: it is undecided, not queued (a queued unit goes
 * out the usual way), has room for another instance, and every instance it has is quiet.
 */
export function wantsQuietCopy(u: UnitRecord, now: number): boolean {
  if (u.done || u.verifying || u.queued || u.instances.length === 0) return false;
  if (u.instances.length + (u.results?.length ?? 0) + u.errors >= u.job.maxInstances) return false;
  for (const t of u.instances) if (!isQuiet(t, now)) return false;
  return true;
}
