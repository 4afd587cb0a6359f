import { describe, expect, it } from "vitest";
import { parseCsv, parseCsvSliced } from "../../server/services/programs/csvShards";
import { seededRandom } from "../helpers/random";

// parseCsv reads plain decimals from the bytes and everything else as text. Whatever the
// input, it must give what reading every line as text gives (the implementation it replaced,
// kept here as the reference): the same values to the bit, the same columns, the same errors.

/** Counts turns of the event loop (one setImmediate after another) until stopped. */
function countTurns() {
  const loop = { turns: 0, ticking: true, stop: () => (loop.ticking = false) };
  const tick = () => {
    loop.turns++;
    if (loop.ticking) setImmediate(tick);
  };
  setImmediate(tick);
  return loop;
}

const isNumber = (s: string) => s.trim() !== "" && Number.isFinite(Number(s));

function textParse(text: string) {
  const lines = text.split(/\r?\n/);
  let first = 0;
  while (first < lines.length && lines[first].trim() === "") first++;
  if (first === lines.length) throw new Error("it is empty");
  const head = lines[first].split(",");
  const hasHeader = head.some((f) => !isNumber(f));
  const columns = hasHeader ? head.map((f, i) => f.trim() || `c${i}`) : head.map((_, i) => `c${i}`);
  const cols = columns.length;
  const values: number[] = [];
  for (let l = hasHeader ? first + 1 : first; l < lines.length; l++) {
    const line = lines[l];
    if (line.trim() === "") continue;
    const fields = line.split(",");
    if (fields.length !== cols) throw new Error(`line ${l + 1} has ${fields.length} field${fields.length === 1 ? "" : "s"}, the ${hasHeader ? "header" : "first line"} ${cols}`);
    for (let c = 0; c < cols; c++) {
      const v = fields[c].trim() === "" ? NaN : Number(fields[c]);
      if (!Number.isFinite(v)) throw new Error(`line ${l + 1}, column ${c + 1} (${columns[c]}): ${JSON.stringify(fields[c].slice(0, 40))} is not a number`);
      values.push(v);
    }
  }
  if (!values.length) throw new Error("it has a header but no rows");
  return { columns, rows: values.length / cols, values };
}

const outcome = (f: () => { columns: string[]; rows: number; values: ArrayLike<number> }) => {
  try {
    const t = f();
    // Object.is per value: -0 and 0 differ, as their bits do.
    return { columns: t.columns, rows: t.rows, values: Array.from(t.values, (v) => (Object.is(v, -0) ? "-0" : v)) };
  } catch (e) {
    return { error: (e as Error).message };
  }
};

const same = (text: string) => {
  const want = outcome(() => textParse(text));
  expect(outcome(() => parseCsv(text)), JSON.stringify(text)).toEqual(want);
  expect(outcome(() => parseCsv(Buffer.from(text, "utf8"))), JSON.stringify(text)).toEqual(want);
};

describe("parseCsv", () => {
  it("reads plain decimals exactly as Number does, to the bit", () => {
    const random = seededRandom(7);
    const fields: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const x = (random() - 0.5) * 10 ** Math.floor(random() * 40 - 20);
      const kinds = [x.toString(), x.toFixed(Math.floor(random() * 12)), x.toExponential(Math.floor(random() * 16)), x.toPrecision(1 + Math.floor(random() * 20)), String(Math.round(x))];
      fields.push(kinds[Math.floor(random() * kinds.length)]);
    }
    const rows = [];
    for (let i = 0; i < fields.length; i += 4) rows.push(fields.slice(i, i + 4).join(","));
    same(`a,b,c,d\n${rows.join("\n")}\n`);
  });

  it("takes what the fast path does not as text, with the same values and errors", () => {
    for (const text of [
      "x,y,label\n1,2,0\n3,4.5,1\n\n5,6,1\n", "1,2\n3,4", "1,2\r\n3,4\r\n", "1,2\r\n3,4\r", "\n\n  \t\n1,2\n",
      " 1 , 2 \n\t3\t,\t4\t\n", "+1,-0\n.5,5.\n-.5,+.5e1\n", "0x1A,1e3\n0b11,0o7\n", "00012,000.000\n1E+2,1e-2\n",
      "1.0000000000000000001,123456789012345678\n1e400,1\n", "1e-400,1\n", "1e22,1e23\n1e-22,1e-23\n",
      "9007199254740993,0.1\n", "1,2\n\u00a01,2\n", "\ufeffa,b\n1,2\n", "\ufeff1,2\n3,4\n", "1,2\n\u00a0\n3,4\n",
      "a,b\n1,2\n3,x\n", "a,b\n1,2,3\n", "a,b\n1\n", "a,b\n", "\n\n", "", "a,b\n1,\n", "a,b\n,1\n", "a,b\n1..2,3\n",
      "a,b\n1e,2\n", "a,b\n1e+,2\n", "a,b\n-,2\n", "a,b\n.,2\n", "a,b\nInfinity,1\n", "a,b\nNaN,1\n", "a,b\n1\u00a0,2\n",
      "a,,c\n1,2,3\n", "a,b\n1,2\r3,4\n", "a,b\n1e0001,2\n", "a,b\n1,2\n3,4\n\n\n",
    ]) same(text);
  });

  it("reads 5,000 rows of fixed-point decimals (the shape the training bench uploads) the same", () => {
    const random = seededRandom(3);
    const lines = ["f0,f1,f2,label"];
    for (let i = 0; i < 5000; i++) lines.push(`${(random() * 4 - 2).toFixed(6)},${(random() - 0.5).toFixed(6)},${(random() * 100).toFixed(3)},${i % 2}`);
    const text = lines.join("\n");
    same(text);
    expect(parseCsv(Buffer.from(text)).rows).toBe(5000);
  });

  it("in slices: the same table or error, with turns of the event loop between slices", async () => {
    // Hex fields take the slow path (the shape of a stranger's 60 MB file that held the loop 2.2 s).
    const rows = Array.from({ length: 200_000 }, (_, i) => `0x1f,${i},0x${(i % 255).toString(16)}`);
    const good = `a,b,c\n${rows.join("\n")}\n`;
    const bad = `${good}1,2\n`;
    const loop = countTurns();
    try {
      const t0 = performance.now();
      const table = await parseCsvSliced(Buffer.from(good));
      const ms = performance.now() - t0;
      expect(outcome(() => table)).toEqual(outcome(() => parseCsv(good)));
      // Slices of about 10 ms: a parse that long gave the loop at least one turn in every two slices' time.
      expect(loop.turns, `${loop.turns} turns in ${ms.toFixed(0)} ms`).toBeGreaterThanOrEqual(Math.floor(ms / 40));
      expect(loop.turns).toBeGreaterThanOrEqual(2);
      await expect(parseCsvSliced(bad)).rejects.toThrow(/line 200002 has 2 fields, the header 3/);
    } finally {
      loop.stop();
    }
  });

  it("refuses a first line of more than 100,000 fields before splitting it", () => {
    expect(parseCsv(`${Array.from({ length: 100_000 }, (_, i) => `c${i}`).join(",")}\n${"1,".repeat(99_999)}1\n`).columns).toHaveLength(100_000);
    expect(() => parseCsv(`a${",".repeat(5_000_000)}\n1\n`)).toThrow("line 1 has more than 100,000 fields");
    expect(() => parseCsv(`\n\n${"1,".repeat(100_000)}1\n`)).toThrow("line 3 has more than 100,000 fields");
  });

  it("refuses a later line of millions of fields from its bytes, and yields between long lines", async () => {
    expect(() => parseCsv(`a,b\n1${",".repeat(5_000_000)}\n`)).toThrow("line 2 has more than 100,000 fields, the header 2");
    expect(() => parseCsv("a,b\n1,2,3\n")).toThrow("line 2 has 3 fields, the header 2");
    // 40 lines of 50,000 hex fields (slow path, ~300 KB each): a turn of the loop between some of them.
    const line = Array.from({ length: 50_000 }, (_, i) => `0x${(i % 255).toString(16)}`).join(",");
    const text = `${Array.from({ length: 50_000 }, (_, i) => `c${i}`).join(",")}\n${Array.from({ length: 40 }, () => line).join("\n")}\n`;
    const loop = countTurns();
    try {
      const table = await parseCsvSliced(Buffer.from(text));
      expect(table.rows).toBe(40);
      expect(loop.turns).toBeGreaterThanOrEqual(2);
    } finally {
      loop.stop();
    }
  });
});
