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
 * Who holds what is settled by a race in a job's first round (whoever finishes first takes
 * the rest), and it stayed so: 10 shards on 4 volunteers went 4, 2, 2, 2 every round, each
 * round as long as four units one after another where three would do; and a volunteer that
 * joined later got no shard unless a holder was slow. So data is handed over, the new holder
 * told to fetch it ahead (`takeHints`, a "prefetch" message) while the old one still computes
 * the round's unit, which would otherwise wait for the fetch: once a round's last unit is
 * handed out, among the round's holders (`spread`: the first round's race is evened out while
 * it runs, not in the next round); and when a volunteer asks for work while a unit of a
 * holder of two more pieces of recent data than its own waits (`passOver`: one that joined).
 */
/** Hand-overs one spread may make: each is a download for the new holder, and a scan of the holders. */
const MAX_MOVES_PER_SPREAD = 32;

export class Locality {
  /** The volunteer that last took a unit reading each key (or was handed it). */
  private readonly holders = new Map<string, VolunteerRecord>();
  /** Each holder's keys, oldest first, to forget it and to bound what is kept per volunteer. */
  private readonly keysOf = new Map<VolunteerRecord, Set<string>>();
  /** When each key was last taken or handed over. */
  private readonly takenAt = new Map<string, number>();
  /** Keys handed over whose current unit the previous holder computes still: key → that holder. */
  private readonly lent = new Map<string, VolunteerRecord>();
  /** Handovers to tell the new holders about: they fetch the data ahead of their first unit. */
  private hints: Array<{ to: VolunteerRecord; key: string }> = [];
  /** The earliest time a unit passed over for its holder may go to anyone (Infinity: none waits). */
  private deferredUntil = Infinity;

  constructor(
    readonly waitMs: number,
    /** Keys kept per volunteer: about what its cache of blobs holds (64 MB of 1.7 MB shards is ~40). */
    private readonly perVolunteer = 256,
    /** A key taken within this long counts as data its holder works on now (ended jobs' keys do not). */
    private readonly recentMs = 30_000,
  ) {}

  /** `v` took a unit reading `key` at `now`: it holds that data now (unless the key was just handed over from it). */
  took(key: string, v: VolunteerRecord, now: number): void {
    const lentTo = this.lent.get(key);
    if (lentTo !== undefined) {
      this.lent.delete(key);
      // The previous holder computes the unit it was lent; the data stays with the new holder.
      if (lentTo === v && this.holders.has(key)) return;
    }
    this.hold(key, v, now);
  }

  private hold(key: string, v: VolunteerRecord, now: number): void {
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
      this.lent.delete(oldest);
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
   * holds the data (or was lent this round's unit of it) and `accepts` it (online with a window,
   * and eligible for the unit), and the unit has not waited `waitMs` yet. May hand the data
   * over to `v` (see the class comment), in which case `v` still passes over this unit.
   */
  passOver(key: string, v: VolunteerRecord, since: number, now: number, accepts: (holder: VolunteerRecord) => boolean): boolean {
    const until = since + this.waitMs;
    const lentTo = this.lent.get(key);
    if (lentTo !== undefined) {
      if (lentTo === v) return false;
      if (now < until && lentTo.window > 0 && accepts(lentTo)) return this.defer(until);
      // The previous holder left or is slow: the rules below apply (the new holder may take it).
    }
    const holder = this.holders.get(key);
    if (holder === undefined || holder === v || holder.window <= 0) return false;
    if (now >= until || !accepts(holder)) return false;
    if (lentTo === undefined && this.recent(holder, now - this.recentMs) >= this.recent(v, now - this.recentMs) + 2) {
      this.hold(key, v, now);
      this.lent.set(key, holder);
      this.hints.push({ to: v, key });
    }
    return this.defer(until);
  }

  private defer(until: number): true {
    if (until < this.deferredUntil) this.deferredUntil = until;
    return true;
  }

  /**
   * Evens out who holds `keys` (a round's, every unit of it handed out): while one holder has
   * two more of them than another, its last taken moves to the one with fewest, which is told
   * to fetch it now (`takeHints`). The old holder computes this round's unit; the next round's
   * goes to the new one, which has had the rest of this round to fetch the data.
   */
  spread(keys: Array<string | undefined>, now: number): void {
    const held = new Map<VolunteerRecord, string[]>();
    for (const k of keys) {
      const h = k === undefined ? undefined : this.holders.get(k);
      if (h === undefined || h.window <= 0) continue;
      const list = held.get(h);
      if (list) list.push(k!);
      else held.set(h, [k!]);
    }
    if (held.size < 2) return;
    // Bounded per call (it runs inside dispatch); what is left evens out over the next rounds.
    for (let moves = 0; moves < MAX_MOVES_PER_SPREAD; moves++) {
      let most: [VolunteerRecord, string[]] | undefined;
      let fewest: [VolunteerRecord, string[]] | undefined;
      for (const e of held) {
        if (!most || e[1].length > most[1].length) most = e;
        if (!fewest || e[1].length < fewest[1].length) fewest = e;
      }
      if (most![1].length < fewest![1].length + 2) return;
      const key = most![1].pop()!;
      this.hold(key, fewest![0], now);
      fewest![1].push(key);
      this.hints.push({ to: fewest![0], key });
    }
  }

  /** When dispatch should come back for units passed over (then forgotten), or undefined. */
  takeDeadline(): number | undefined {
    const at = this.deferredUntil;
    this.deferredUntil = Infinity;
    return at === Infinity ? undefined : at;
  }

  /** Data handed over since the last call: each new holder should fetch its keys now. Cleared by the call. */
  takeHints(): Array<{ to: VolunteerRecord; key: string }> {
    const hints = this.hints;
    this.hints = [];
    return hints;
  }

  /** The volunteer left: the data it held is nobody's. */
  forget(v: VolunteerRecord): void {
    const keys = this.keysOf.get(v);
    if (keys) {
      for (const k of keys) {
        this.holders.delete(k);
        this.takenAt.delete(k);
        this.lent.delete(k);
      }
      this.keysOf.delete(v);
    }
    for (const [k, h] of this.lent) if (h === v) this.lent.delete(k);
    this.hints = this.hints.filter((h) => h.to !== v);
  }

  /** Keys held (for the scheduler's self-check and tests). */
  get size(): number {
    return this.holders.size;
  }
}
