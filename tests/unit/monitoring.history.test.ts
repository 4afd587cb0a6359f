import { describe, expect, it } from "vitest";
import { averageSamples, completeValues, RingBuffer, SampleHistory, SERIES_NAMES } from "../../server/monitoring/history";
import { SERIES, type Sample } from "../../server/monitoring/series";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0); // on a minute boundary

/** A sample whose every series is `v` (and volunteers is `v` too, for easy reading). */
function sample(at: number, v: number): Sample {
  return { at, values: completeValues(Object.fromEntries(SERIES_NAMES.map((n) => [n, v]))) };
}

describe("ring buffer", () => {
  it("keeps the newest items, oldest first, once full", () => {
    const r = new RingBuffer<number>(3);
    expect(r.toArray()).toEqual([]);
    expect(r.last()).toBeUndefined();
    r.push(1);
    r.push(2);
    expect(r.toArray()).toEqual([1, 2]);
    r.push(3);
    r.push(4);
    r.push(5);
    expect(r.size).toBe(3);
    expect(r.toArray()).toEqual([3, 4, 5]);
    expect(r.at(0)).toBe(3);
    expect(r.last()).toBe(5);
    expect(r.at(3)).toBeUndefined();
  });
});

describe("sample values", () => {
  it("always hold every series, finite: unknown keys dropped, missing or broken ones 0", () => {
    const v = completeValues({ volunteers: 3, nonsense: 7, cpu_percent: Number.NaN, load1: "2" });
    expect(Object.keys(v).sort()).toEqual(Object.keys(SERIES).sort());
    expect(v.volunteers).toBe(3);
    expect(v.cpu_percent).toBe(0);
    expect(v.load1).toBe(0);
    expect("nonsense" in v).toBe(false);
  });

  it("average per series", () => {
    const a = sample(T0, 1);
    const b = sample(T0 + 5000, 3);
    b.values.volunteers = 11;
    const avg = averageSamples([a, b], T0);
    expect(avg.at).toBe(T0);
    expect(avg.values.cpu_percent).toBe(2);
    expect(avg.values.volunteers).toBe(6);
  });
});

describe("sample history", () => {
  it("closes a minute into its average when the first sample of a later minute arrives", () => {
    const h = new SampleHistory({ bufferMs: HOUR, minuteMs: MINUTE, intervalMs: 5000 });
    // 12 samples in the first minute, values 0..11: their mean is 5.5.
    for (let i = 0; i < 12; i++) expect(h.add(sample(T0 + i * 5000, i))).toBeUndefined();
    const closed = h.add(sample(T0 + MINUTE, 100));
    expect(closed).toBeDefined();
    expect(closed!.at).toBe(T0);
    expect(closed!.values.volunteers).toBe(5.5);
    expect(closed!.values.disk_free_ratio).toBe(5.5);
    // The next minute's average does not include the previous minute's samples.
    for (let i = 1; i < 12; i++) h.add(sample(T0 + MINUTE + i * 5000, 100));
    const next = h.add(sample(T0 + 2 * MINUTE + 2500, 0));
    expect(next).toMatchObject({ at: T0 + MINUTE, values: { volunteers: 100 } });
  });

  it("skips empty minutes (a pause in sampling) and stamps each row with its own minute", () => {
    const h = new SampleHistory({ bufferMs: HOUR, minuteMs: MINUTE, intervalMs: 5000 });
    h.add(sample(T0 + 1000, 4));
    h.add(sample(T0 + 2000, 6));
    const closed = h.add(sample(T0 + 5 * MINUTE + 10, 1));
    expect(closed).toMatchObject({ at: T0, values: { volunteers: 5 } });
    expect(h.add(sample(T0 + 5 * MINUTE + 20, 1))).toBeUndefined();
  });

  it("gives the open minute's average on shutdown, once", () => {
    const h = new SampleHistory({ bufferMs: HOUR, minuteMs: MINUTE, intervalMs: 5000 });
    expect(h.closeOpenMinute()).toBeUndefined();
    h.add(sample(T0 + 30_000, 2));
    h.add(sample(T0 + 35_000, 4));
    expect(h.closeOpenMinute()).toMatchObject({ at: T0, values: { volunteers: 3 } });
    expect(h.closeOpenMinute()).toBeUndefined();
  });

  it("keeps an hour at full resolution, dropping the oldest samples", () => {
    const h = new SampleHistory({ bufferMs: HOUR, minuteMs: MINUTE, intervalMs: 5000 });
    const n = 2 * 720; // two hours every 5 s
    for (let i = 0; i < n; i++) h.add(sample(T0 + i * 5000, i));
    const all = h.history();
    expect(all.length).toBeGreaterThanOrEqual(720);
    expect(all.length).toBeLessThanOrEqual(723);
    expect(all[all.length - 1].at).toBe(T0 + (n - 1) * 5000);
    expect(all[all.length - 1].at - all[0].at).toBeGreaterThanOrEqual(HOUR - 5000);
    expect(all[all.length - 1].at - all[0].at).toBeLessThanOrEqual(HOUR + 10_000);
    expect(h.latest()!.values.volunteers).toBe(n - 1);
  });

  it("merges stored minute rows before the buffer, ascending, without overlap", () => {
    const h = new SampleHistory({ bufferMs: HOUR, minuteMs: MINUTE, intervalMs: 5000 });
    const now = T0 + 90 * MINUTE + 20_000;
    // Rows a previous run saved (out of order), two of them older than an hour before now.
    const rows = [40, 31, 35, 89, 85, 88, 90, 10, 29].map((m) => sample(T0 + m * MINUTE, m));
    h.addMinutes(rows);
    // This run has sampled for 20 s, in the minute that starts at 90.
    for (let t = T0 + 90 * MINUTE + 5000; t <= now; t += 5000) h.add(sample(t, 1000));

    const hist = h.history();
    const ats = hist.map((s) => s.at);
    expect(ats).toEqual([...ats].sort((a, b) => a - b));
    // Minutes 10 and 29 are beyond the hour; minute 90 overlaps the buffer and is left out.
    expect(hist.filter((s) => s.values.volunteers < 1000).map((s) => s.values.volunteers)).toEqual([31, 35, 40, 85, 88, 89]);
    expect(hist.filter((s) => s.values.volunteers === 1000)).toHaveLength(4);

    // `since` cuts both parts.
    const since = h.history(T0 + 86 * MINUTE);
    expect(since.map((s) => s.values.volunteers)).toEqual([88, 89, 1000, 1000, 1000, 1000]);
    expect(h.history(T0 + 90 * MINUTE + 15_000).map((s) => s.at)).toEqual([T0 + 90 * MINUTE + 15_000, T0 + 90 * MINUTE + 20_000]);
  });

  it("averages two rows of the same minute (a restart within it) into one", () => {
    const h = new SampleHistory({ bufferMs: HOUR, minuteMs: MINUTE, intervalMs: 5000 });
    h.addMinutes([sample(T0, 2), sample(T0 + MINUTE, 7)]);
    h.addMinutes([sample(T0, 4)]);
    expect(h.history().map((s) => [s.at, s.values.volunteers])).toEqual([
      [T0, 3],
      [T0 + MINUTE, 7],
    ]);
  });

  it("lets its own minute rows age out once the buffer covers the hour", () => {
    const h = new SampleHistory({ bufferMs: 10 * MINUTE, minuteMs: MINUTE, intervalMs: 5000 });
    h.addMinutes([sample(T0 - 5 * MINUTE, 9)]);
    h.add(sample(T0, 1));
    expect(h.history().map((s) => s.values.volunteers)).toEqual([9, 1]);
    for (let t = T0 + 5000; t <= T0 + 20 * MINUTE; t += 5000) h.add(sample(t, 1));
    const hist = h.history();
    expect(hist.every((s) => s.values.volunteers === 1)).toBe(true);
    expect(hist[0].at).toBeGreaterThanOrEqual(T0 + 10 * MINUTE - 10_000);
  });
});
