import type { VolunteerRecord } from "./records.js";

/**
 * Locality scheduling (as BOINC's, simplified): a unit that reads a piece of data a volunteer
 * already holds goes to that volunteer. An iterative job's shard is the same blob every round,
 * and a volunteer that computed it last round has it cached (CLI and browser alike); anyone
 * else fetches and parses it again (a 1.7 MB shard costs 50-250 ms on a loaded machine,
 * against 2 ms for the unit itself). So a queued unit whose data another online volunteer
 * holds is passed over by the others for up to `waitMs` after its job started: its holder is
 * busy with its other shards for a unit or two and takes it next. Past that (a slow holder) it
 * goes to anyone, and the one that takes it holds the data from then on.
 *
 * Unless the holder holds at least two more pieces of recent data than the volunteer asking:
 * then the asker takes the unit at once, and holds it from then on. Who holds what is settled
 * by a race in a job's first round (whoever finishes first takes the rest), and without this it
 * stayed so: 10 shards on 4 volunteers went 4, 2, 2, 2 every round, the round as long as four
 * units one after another where three would do; and a volunteer that joined later got no
 * shard unless a holder was slow. One fetch rebalances it for every later round.
 */
export class Locality {
  /** The volunteer that last took a unit reading each key. */
  private readonly holders = new Map<string, VolunteerRecord>();
  /** Each holder's keys, oldest first, to forget it and to bound what is kept per volunteer. */
  private readonly keysOf = new Map<VolunteerRecord, Set<string>>();
  /** When each key was last taken. */
  private readonly takenAt = new Map<string, number>();
  /** The earliest time a unit passed over for its holder may go to anyone (Infinity: none waits). */
  private deferredUntil = Infinity;

  constructor(
    readonly waitMs: number,
    /** Keys kept per volunteer: about what its cache of blobs holds (64 MB of 1.7 MB shards is ~40). */
    private readonly perVolunteer = 256,
    /** A key taken within this long counts as data its holder works on now (ended jobs' keys do not). */
    private readonly recentMs = 30_000,
  ) {}

  /** `v` took a unit reading `key` at `now`: it holds that data now. */
  took(key: string, v: VolunteerRecord, now: number): void {
    this.takenAt.set(key, now);
    const before = this.holders.get(key);
    if (before === v) {
      const keys = this.keysOf.get(v)!;
      keys.delete(key);
      keys.add(key);
      return;
    }
    if (before) this.keysOf.get(before)?.delete(key);
    this.holders.set(key, v);
    let keys = this.keysOf.get(v);
    if (!keys) this.keysOf.set(v, (keys = new Set()));
    keys.add(key);
    if (keys.size > this.perVolunteer) {
      const oldest = keys.values().next().value as string;
      keys.delete(oldest);
      this.holders.delete(oldest);
      this.takenAt.delete(oldest);
    }
  }

  /** Keys `v` took since `since` (its keys are in the order it last took them: the recent ones last). */
  private recent(v: VolunteerRecord, since: number): number {
    const keys = this.keysOf.get(v);
    if (!keys) return 0;
    let n = keys.size;
    for (const k of keys) {
      if ((this.takenAt.get(k) ?? 0) >= since) break;
      n--;
    }
    return n;
  }

  /**
   * Whether `v` should pass over a unit reading `key` queued since `since`: another volunteer
   * holds the data and `accepts` it (online with a window, and eligible for the unit), and the
   * unit has not waited `waitMs` yet.
   */
  passOver(key: string, v: VolunteerRecord, since: number, now: number, accepts: (holder: VolunteerRecord) => boolean): boolean {
    const holder = this.holders.get(key);
    if (holder === undefined || holder === v || holder.window <= 0) return false;
    const until = since + this.waitMs;
    if (now >= until || !accepts(holder)) return false;
    if (this.recent(holder, now - this.recentMs) >= this.recent(v, now - this.recentMs) + 2) return false;
    if (until < this.deferredUntil) this.deferredUntil = until;
    return true;
  }

  /** When dispatch should come back for units passed over (then forgotten), or undefined. */
  takeDeadline(): number | undefined {
    const at = this.deferredUntil;
    this.deferredUntil = Infinity;
    return at === Infinity ? undefined : at;
  }

  /** The volunteer left: the data it held is nobody's. */
  forget(v: VolunteerRecord): void {
    const keys = this.keysOf.get(v);
    if (!keys) return;
    for (const k of keys) {
      this.holders.delete(k);
      this.takenAt.delete(k);
    }
    this.keysOf.delete(v);
  }

  /** Keys held (for the scheduler's self-check and tests). */
  get size(): number {
    return this.holders.size;
  }
}
