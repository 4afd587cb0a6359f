import { describe, expect, it } from "vitest";
import crypto from "node:crypto";
import { csvTable, summarizeCsv, UnusableCsv } from "../../server/services/programs/csvTables";

// Uploaded CSV files read once, at upload, and kept by hash for the submissions that follow.

const hashOf = (b: Buffer) => crypto.createHash("sha256").update(b).digest("hex");

describe("csvTables", () => {
  it("keeps the table read at upload: a submission reads no bytes again", async () => {
    const bytes = Buffer.from(`x,y,label\n${Array.from({ length: 500 }, (_, i) => `${i},${i / 2},${i % 2}`).join("\n")}\n`);
    const h = hashOf(bytes);
    expect(await summarizeCsv(h, bytes)).toEqual({ rows: 500, columns: 3 });
    let reads = 0;
    const t = await csvTable(h, async () => (reads++, bytes));
    expect(reads).toBe(0);
    expect(t.columns).toEqual(["x", "y", "label"]);
    expect(t.values[3 * 499 + 1]).toBe(249.5);
  });

  it("reads a file not kept once, however many ask for it at the same time", async () => {
    const bytes = Buffer.from("a,b\n1,2\n3,4\n");
    const h = hashOf(Buffer.concat([bytes, Buffer.from(crypto.randomBytes(8).toString("hex"))]));
    let reads = 0;
    const read = async () => (reads++, bytes);
    const [a, b] = await Promise.all([csvTable(h, read), csvTable(h, read)]);
    expect(reads).toBe(1);
    expect(a).toBe(b);
    expect(Array.from(a.values)).toEqual([1, 2, 3, 4]);
    // Kept without the parse's spare room (its buffer grows by doubling from 1,024 values).
    expect(a.values.buffer.byteLength).toBe(a.values.byteLength);
  });

  it("remembers why a file cannot be used, and refuses it again without reading it", async () => {
    const bytes = Buffer.from("a,b\n1,2\nthree,4\n");
    const h = hashOf(bytes);
    expect(await summarizeCsv(h, bytes)).toEqual({ error: 'line 3, column 1 (a): "three" is not a number' });
    let reads = 0;
    await expect(csvTable(h, async () => (reads++, bytes))).rejects.toBeInstanceOf(UnusableCsv);
    await expect(csvTable(h, async () => (reads++, bytes))).rejects.toThrow('line 3, column 1 (a): "three" is not a number');
    expect(reads).toBe(0);
  });

  it("reads one upload's file at a time: another one uploaded meanwhile is left for its submission", async () => {
    const file = (seed: string) => Buffer.from(`a,b\n${Array.from({ length: 20_000 }, (_, i) => `${i},${seed}`).join("\n")}\n`);
    const [one, two] = [file("1"), file("2")];
    const first = summarizeCsv(hashOf(one), one);
    expect(await summarizeCsv(hashOf(two), two)).toBeUndefined();
    // The same file again joins the parse under way.
    const again = summarizeCsv(hashOf(one), one);
    expect(await first).toEqual({ rows: 20_000, columns: 2 });
    expect(await again).toEqual({ rows: 20_000, columns: 2 });
    expect(await summarizeCsv(hashOf(two), two)).toEqual({ rows: 20_000, columns: 2 });
  });

  it("forgets a parse whose bytes could not be read, so the next caller tries again", async () => {
    const h = hashOf(crypto.randomBytes(16));
    await expect(csvTable(h, async () => { throw new Error("blob missing"); })).rejects.toThrow("blob missing");
    const t = await csvTable(h, async () => Buffer.from("5,6\n"));
    expect(Array.from(t.values)).toEqual([5, 6]);
  });
});
