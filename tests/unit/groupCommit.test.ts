import { describe, expect, it } from "vitest";
import { GroupCommitter, LONE_TRIES } from "../../server/store/groupCommit";
import { isDataError } from "../../server/store/dataError";

describe("GroupCommitter", () => {
  it("commits items enqueued together in one batch, in order, and resolves after the commit", async () => {
    const batches: number[][] = [];
    const gc = new GroupCommitter<number>(async (items) => {
      await new Promise((r) => setTimeout(r, 5));
      batches.push(items);
    }, { intervalMs: 5, maxBatch: 100 });
    const settled: number[] = [];
    const all = [1, 2, 3, 4].map((n) => gc.enqueue(n).then(() => settled.push(n)));
    expect(settled).toEqual([]);
    await Promise.all(all);
    expect(batches).toEqual([[1, 2, 3, 4]]);
    expect(settled).toEqual([1, 2, 3, 4]);
  });

  it("splits at maxBatch without waiting for the interval", async () => {
    const batches: number[][] = [];
    const gc = new GroupCommitter<number>(async (items) => void batches.push(items), { intervalMs: 10_000, maxBatch: 3 });
    await Promise.all([1, 2, 3].map((n) => gc.enqueue(n)));
    expect(batches).toEqual([[1, 2, 3]]);
    const rest = [4, 5].map((n) => gc.enqueue(n));
    await gc.drain();
    await Promise.all(rest);
    expect(batches).toEqual([[1, 2, 3], [4, 5]]);
  });

  it("bounds a batch by the bytes its items carry; an item heavier than the bound goes alone", async () => {
    const batches: string[][] = [];
    const gc = new GroupCommitter<string>(async (items) => void batches.push(items), {
      intervalMs: 0, maxBatch: 100, maxBytes: 10, weight: (s) => s.length,
    });
    await Promise.all(["aaaa", "bbbb", "cccc", "dddddddddddddddd", "e", "ffffffffff", "g"].map((s) => gc.enqueue(s)));
    expect(batches).toEqual([["aaaa", "bbbb"], ["cccc"], ["dddddddddddddddd"], ["e"], ["ffffffffff"], ["g"]]);
  });

  it("retries a failed commit with the same items and never resolves them before success", async () => {
    let attempts = 0;
    const committed: number[][] = [];
    const errors: unknown[] = [];
    const gc = new GroupCommitter<number>(async (items) => {
      if (++attempts < 3) throw new Error("database is locked");
      committed.push(items);
    }, { intervalMs: 1, maxBatch: 10, onError: (e) => errors.push(e) });
    let resolved = false;
    const p = gc.enqueue(7).then(() => (resolved = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(resolved).toBe(false);
    await p;
    expect(attempts).toBe(3);
    expect(errors).toHaveLength(2);
    expect(committed).toEqual([[7]]);
  });

  it("drains everything on close and refuses new items afterwards", async () => {
    const seen: number[] = [];
    const gc = new GroupCommitter<number>(async (items) => void seen.push(...items), { intervalMs: 1000, maxBatch: 100 });
    void gc.enqueue(1);
    void gc.enqueue(2);
    await gc.close();
    expect(seen).toEqual([1, 2]);
    await expect(gc.enqueue(3)).rejects.toThrow(/closed/);
  });
});

describe("GroupCommitter's seal", () => {
  it("appends what accumulated to the last batch queued, once per batch, and never to a batch with others behind it", async () => {
    const batches: string[][] = [];
    let pending: string[] = [];
    const gc = new GroupCommitter<string>(async (items) => void batches.push(items), {
      intervalMs: 10_000, maxBatch: 3,
      seal: () => {
        if (!pending.length) return undefined;
        const item = `rows(${pending.join(",")})`;
        pending = [];
        return item;
      },
    });
    // a, b and c fill the first batch (sealed at once: maxBatch), d waits behind it.
    for (const x of ["a", "b", "c", "d"]) {
      void gc.enqueue(x);
      pending.push(x);
    }
    await gc.drain();
    // The full batch had d queued behind it: its rows wait for the batch that holds d.
    expect(batches).toEqual([["a", "b", "c"], ["d", "rows(a,b,c,d)"]]);
    // Nothing accumulated: nothing appended.
    await gc.enqueue("e");
    expect(batches.at(-1)).toEqual(["e"]);
    expect(gc.size).toBe(0);
  });

  it("keeps the appended item in a batch that is retried", async () => {
    let attempts = 0;
    const committed: string[][] = [];
    let sealed = 0;
    const gc = new GroupCommitter<string>(async (items) => {
      if (++attempts < 2) throw new Error("database is locked");
      committed.push([...items]);
    }, { intervalMs: 1, maxBatch: 10, onError: () => undefined, seal: () => (sealed++ ? undefined : "rows") });
    await gc.enqueue("a");
    expect(committed).toEqual([["a", "rows"]]);
    expect(gc.size).toBe(0);
  });
});

describe("GroupCommitter with a poisoned item", () => {
  /** PostgreSQL's "integer out of range", as the pg driver reports it. */
  const outOfRange = () => Object.assign(new Error("value \"3000000000\" is out of range for type integer"), { code: "22003" });

  it("narrows a batch failing on its data down to the item, drops it, and commits the rest once, in order", async () => {
    const committed: number[] = [];
    const tries = new Map<string, number>();
    const dropped: number[] = [];
    const errors: unknown[] = [];
    const gc = new GroupCommitter<number>(async (items) => {
      const key = items.join(",");
      tries.set(key, (tries.get(key) ?? 0) + 1);
      if (items.includes(13)) throw outOfRange();
      committed.push(...items);
    }, { intervalMs: 1, maxBatch: 100, isolate: isDataError, onDropped: (n) => dropped.push(n), onError: (e) => errors.push(e) });
    const items = Array.from({ length: 20 }, (_, i) => i + 1);
    const settled: number[] = [];
    await Promise.all(items.map((n) => gc.enqueue(n).then(() => settled.push(n))));
    expect(committed).toEqual(items.filter((n) => n !== 13));
    expect(dropped).toEqual([13]);
    expect(tries.get("13")).toBe(LONE_TRIES);
    expect(tries.get(items.join(","))).toBe(1);
    // Data errors are narrowed, not retried with backoff as a failed commit.
    expect(errors).toEqual([]);
    expect(settled).toHaveLength(20);
    expect(gc.size).toBe(0);
    // What comes after commits as usual.
    await gc.enqueue(21);
    expect(committed.at(-1)).toBe(21);
  });

  it("keeps an item that fails alone on its data once and then commits (a race with another writer)", async () => {
    const committed: number[] = [];
    let failedAlone = 0;
    const dropped: number[] = [];
    const gc = new GroupCommitter<number>(async (items) => {
      if (items.includes(2) && (items.length > 1 || failedAlone++ === 0)) throw outOfRange();
      committed.push(...items);
    }, { intervalMs: 1, maxBatch: 100, isolate: isDataError, onDropped: (n) => dropped.push(n) });
    await Promise.all([1, 2, 3].map((n) => gc.enqueue(n)));
    expect(committed).toEqual([1, 2, 3]);
    expect(dropped).toEqual([]);
  });

  it("after another kind of error while narrowing, retries only what was neither committed nor dropped", async () => {
    const committed: number[] = [];
    let outage = true;
    const gc = new GroupCommitter<number>(async (items) => {
      if (items.includes(3)) throw outOfRange();
      // The database goes away once, after the narrowing has committed [1, 2].
      if (items.includes(7) && committed.length && outage) {
        outage = false;
        throw new Error("Connection terminated unexpectedly");
      }
      committed.push(...items);
    }, { intervalMs: 1, maxBatch: 100, isolate: isDataError, onError: () => undefined });
    await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((n) => gc.enqueue(n)));
    expect(outage).toBe(false);
    expect(committed).toEqual([1, 2, 4, 5, 6, 7, 8]);
  });

  it("retries forever, whole, a batch whose error is not its data's", async () => {
    let attempts = 0;
    const committed: number[][] = [];
    const gc = new GroupCommitter<number>(async (items) => {
      if (++attempts < 3) throw Object.assign(new Error("deadlock detected"), { code: "40P01" });
      committed.push([...items]);
    }, { intervalMs: 1, maxBatch: 100, isolate: isDataError, onError: () => undefined, onDropped: () => expect.unreachable() });
    await Promise.all([1, 2, 3].map((n) => gc.enqueue(n)));
    expect(committed).toEqual([[1, 2, 3]]);
  });
});

describe("isDataError", () => {
  it("tells the data's own errors from those a retry clears", () => {
    const coded = (code: string) => Object.assign(new Error(code), { code });
    for (const code of ["22003", "22P02", "23502", "23505", "23503", "54000", "SQLITE_CONSTRAINT_NOTNULL", "SQLITE_CONSTRAINT_FOREIGNKEY", "SQLITE_TOOBIG", "SQLITE_MISMATCH"]) {
      expect(isDataError(coded(code)), code).toBe(true);
    }
    expect(isDataError(new RangeError("Invalid string length"))).toBe(true);
    expect(isDataError(Object.assign(new Error("Invalid string length"), { name: "RangeError" }))).toBe(true);
    for (const code of ["40P01", "40001", "57P01", "08006", "53300", "SQLITE_BUSY", "SQLITE_IOERR", "ECONNREFUSED"]) {
      expect(isDataError(coded(code)), code).toBe(false);
    }
    expect(isDataError(new Error("the database writer thread exited (1)"))).toBe(false);
    expect(isDataError(null)).toBe(false);
    expect(isDataError("boom")).toBe(false);
  });
});

describe("GroupCommitter.committedSoFar", () => {
  it("waits for what was enqueued before it, not for what comes after", async () => {
    const committed: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gc = new GroupCommitter<number>(async (items) => {
      if (items.includes(2)) await gate; // the second batch stays open until released
      committed.push(...items);
    }, { intervalMs: 1, maxBatch: 1 });
    void gc.enqueue(1);
    const barrier = gc.committedSoFar();
    void gc.enqueue(2);
    await barrier;
    expect(committed).toEqual([1]);
    release();
    await gc.drain();
    expect(committed).toEqual([1, 2]);
  });
});
