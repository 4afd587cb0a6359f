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
 */
export class Locality {
  /** The volunteer that last took a unit reading each key. */
  private readonly holders = new Map<string, VolunteerRecord>();
  /** Each holder's keys, oldest first, to forget it and to bound what is kept per volunteer. */
  private readonly keysOf = new Map<VolunteerRecord, Set<string>>();
  /** The earliest time a unit passed over for its holder may go to anyone (Infinity: none waits). */
  private deferredUntil = Infinity;

  constructor(
    readonly waitMs: number,
    /** Keys kept per volunteer: about what its cache of blobs holds (64 MB of 1.7 MB shards is ~40). */
    private readonly perVolunteer = 256,
  ) {}

  /** `v` took a unit reading `key`: it holds that data now. */
  took(key: string, v: VolunteerRecord): void {
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
    }
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
    for (const k of keys) this.holders.delete(k);
    this.keysOf.delete(v);
  }

  /** Keys held (for the scheduler's self-check and tests). */
  get size(): number {
    return this.holders.size;
  }
}
