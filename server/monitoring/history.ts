import { SERIES, type Sample, type SeriesName } from "./series";

export const SERIES_NAMES = Object.keys(SERIES) as SeriesName[];

/** A fixed-capacity FIFO: pushing onto a full buffer drops the oldest item. */
export class RingBuffer<T> {
  private readonly items: Array<T | undefined>;
  private start = 0;
  private length = 0;

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new Error("a ring buffer needs a capacity of at least 1");
    this.items = new Array(capacity);
  }

  get size() {
    return this.length;
  }

  push(item: T) {
    const end = (this.start + this.length) % this.capacity;
    this.items[end] = item;
    if (this.length < this.capacity) this.length++;
    else this.start = (this.start + 1) % this.capacity;
  }

  /** The i-th oldest item. */
  at(i: number): T | undefined {
    if (i < 0 || i >= this.length) return undefined;
    return this.items[(this.start + i) % this.capacity];
  }

  last(): T | undefined {
    return this.at(this.length - 1);
  }

  /** Oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.length; i++) out.push(this.items[(this.start + i) % this.capacity] as T);
    return out;
  }
}

/** The mean of each series over `samples`, stamped `at`. */
export function averageSamples(samples: Sample[], at: number): Sample {
  const values = {} as Record<SeriesName, number>;
  for (const name of SERIES_NAMES) {
    let sum = 0;
    for (const s of samples) sum += s.values[name];
    values[name] = samples.length ? sum / samples.length : 0;
  }
  return { at, values };
}

/** Every series present and finite: unknown keys dropped, missing or broken ones read as 0. */
export function completeValues(raw: Partial<Record<string, unknown>>): Record<SeriesName, number> {
  const values = {} as Record<SeriesName, number>;
  for (const name of SERIES_NAMES) {
    const v = raw[name];
    values[name] = typeof v === "number" && Number.isFinite(v) ? v : 0;
  }
  return values;
}

export interface HistoryOptions {
  /** How far back full-resolution samples are kept (an hour). */
  bufferMs: number;
  /** Width of a downsampled row (a minute). */
  minuteMs: number;
  /** The sample interval, to size the ring buffer. */
  intervalMs: number;
}

/** Above this the buffer would cost more memory than it is worth (a 0.18 s interval for an hour). */
const MAX_BUFFERED = 20_000;

/**
 * The dashboard's memory: the last hour at full resolution in a ring buffer, plus per-minute
 * averages. A minute's average is produced once a sample from a later minute arrives; minute
 * rows are what survives a restart, and fill the part of the hour the buffer does not cover.
 */
export class SampleHistory {
  private readonly buffer: RingBuffer<Sample>;
  /** Minute averages (loaded or produced here) within the last `bufferMs`, ascending. */
  private minutes: Sample[] = [];
  /** Start of the minute whose samples are not averaged yet. */
  private openMinute: number | undefined;

  constructor(private readonly opts: HistoryOptions) {
    this.buffer = new RingBuffer(Math.min(MAX_BUFFERED, Math.ceil(opts.bufferMs / opts.intervalMs) + 2));
  }

  minuteOf(at: number) {
    return Math.floor(at / this.opts.minuteMs) * this.opts.minuteMs;
  }

  /** Adds a sample; returns the average of the minute it closed, if it closed one. */
  add(sample: Sample): Sample | undefined {
    const minute = this.minuteOf(sample.at);
    let closed: Sample | undefined;
    if (this.openMinute !== undefined && minute > this.openMinute) closed = this.averageOf(this.openMinute);
    if (this.openMinute === undefined || minute > this.openMinute) this.openMinute = minute;
    this.buffer.push(sample);
    if (closed) this.addMinutes([closed]);
    this.forget(sample.at);
    return closed;
  }

  /** The average of the minute still open (on shutdown), if it has samples; closes it. */
  closeOpenMinute(): Sample | undefined {
    if (this.openMinute === undefined) return undefined;
    const avg = this.averageOf(this.openMinute);
    this.openMinute = undefined;
    if (avg) this.addMinutes([avg]);
    return avg;
  }

  /**
   * Minute rows from storage (any order); kept only within the buffer's hour. Two rows of the
   * same minute (a restart within it) become their mean.
   */
  addMinutes(rows: Sample[]) {
    if (!rows.length) return;
    const sorted = [...this.minutes, ...rows].sort((a, b) => a.at - b.at);
    this.minutes = [];
    for (let i = 0; i < sorted.length; ) {
      let j = i + 1;
      while (j < sorted.length && sorted[j].at === sorted[i].at) j++;
      this.minutes.push(j - i === 1 ? sorted[i] : averageSamples(sorted.slice(i, j), sorted[i].at));
      i = j;
    }
    const newest = Math.max(this.buffer.last()?.at ?? -Infinity, this.minutes[this.minutes.length - 1].at);
    this.forget(newest);
  }

  latest(): Sample | undefined {
    return this.buffer.last();
  }

  /**
   * Ascending: minute rows (stamped with the start of their minute) that ended before the
   * oldest buffered sample, then the buffer; only what is at or after `sinceMs`.
   */
  history(sinceMs = -Infinity): Sample[] {
    const buffered = this.buffer.toArray();
    const oldest = buffered.length ? buffered[0].at : Infinity;
    const out: Sample[] = [];
    for (const m of this.minutes) if (m.at + this.opts.minuteMs <= oldest && m.at >= sinceMs) out.push(m);
    for (const s of buffered) if (s.at >= sinceMs) out.push(s);
    return out;
  }

  private averageOf(minute: number): Sample | undefined {
    const inMinute: Sample[] = [];
    for (let i = this.buffer.size - 1; i >= 0; i--) {
      const s = this.buffer.at(i)!;
      if (s.at < minute) break;
      if (s.at < minute + this.opts.minuteMs) inMinute.push(s);
    }
    return inMinute.length ? averageSamples(inMinute, minute) : undefined;
  }

  /** Drops minute rows older than the hour before `now`. Buffered samples age out by capacity. */
  private forget(now: number) {
    const cutoff = now - this.opts.bufferMs;
    let drop = 0;
    while (drop < this.minutes.length && this.minutes[drop].at < cutoff) drop++;
    if (drop) this.minutes = this.minutes.slice(drop);
  }
}
