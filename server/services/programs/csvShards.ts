// A numeric CSV cut into shards for data-parallel jobs. Each shard is stored once as a blob
// (the bytes of a row-major Float64Array, little-endian), so volunteers fetch it by hash once
// and keep it across the rounds of an iterative job; a round's task carries only the
// round's broadcast (the current weights), never the data again. Binary rather than text:
// a volunteer reads 10,000 rows × 21 columns in no time, where parsing them anew would
// cost it milliseconds every round.

export interface CsvTable {
  columns: string[];
  rows: number;
  /** Row-major values. */
  values: Float64Array;
}

const isNumber = (s: string) => s.trim() !== "" && Number.isFinite(Number(s));

/**
 * Parses a CSV of numbers: comma-separated, one row per line, an optional header line (a
 * first line with a field that is not a number), blank lines skipped. Throws with the line
 * number on anything else.
 *
 * Reads bytes: each plain decimal field (as written by most tools) is converted where it lies,
 * without a string per line or per field (100,000 rows × 21 columns: ~100 ms against ~300 ms
 * for split and Number). Any line the fast path does not take (other whitespace, hex, a
 * stray character, a wrong field count) is read as text, as `Number` reads it, with the same
 * errors.
 */
export function parseCsv(input: string | Uint8Array): CsvTable {
  const steps = parsing(input, Infinity);
  for (let r = steps.next(); ; r = steps.next()) if (r.done) return r.value;
}

/** Longest stretch of parsing between two turns of the event loop (parseCsvSliced). */
const SLICE_MS = 10;

/**
 * parseCsv in slices of about SLICE_MS, giving the event loop a turn between them: a 60 MB
 * file takes seconds to read, and read in one go it held every request (health probes
 * included) for that long.
 */
export async function parseCsvSliced(input: string | Uint8Array): Promise<CsvTable> {
  const steps = parsing(input, SLICE_MS);
  for (let r = steps.next(); ; r = steps.next()) {
    if (r.done) return r.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** The parse, yielding once it has run `sliceMs` since it began or last yielded (checked every 1,024 lines or 256 KiB). */
function* parsing(input: string | Uint8Array, sliceMs: number): Generator<void, CsvTable> {
  let sliceStart = performance.now();
  let sinceCheck = 0;
  let checkedAt = 0;
  const b = typeof input === "string" ? Buffer.from(input, "utf8") : Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  let pos = 0;
  let line = 0;
  /** The next line's bounds, without its \r\n or \n (as a split on /\r?\n/ gives them, the empty last one too), or false past the end. */
  const next = (): false | [number, number] => {
    if (pos > b.length) return false;
    const nl = b.indexOf(10, pos);
    const from = pos;
    let to = nl < 0 ? b.length : nl;
    if (nl >= 0 && to > from && b[to - 1] === 13) to--;
    pos = nl < 0 ? b.length + 1 : nl + 1;
    line++;
    return [from, to];
  };
  const text = (r: [number, number]) => b.toString("utf8", r[0], r[1]);

  let first: [number, number] | false;
  while ((first = next()) && text(first).trim() === "");
  if (!first) throw new Error("it is empty");
  // Counted before the line is split: a first line of millions of commas would be millions of names.
  // Searched within the line only: a first line without a comma would otherwise scan the whole file.
  const head0 = b.subarray(first[0], first[1]);
  let commas = 0;
  for (let i = head0.indexOf(44); i >= 0; i = head0.indexOf(44, i + 1)) {
    if (++commas >= MAX_COLUMNS) throw new Error(`line ${line} has more than ${MAX_COLUMNS.toLocaleString("en-US")} fields`);
  }
  const head = text(first).split(",");
  const hasHeader = head.some((f) => !isNumber(f));
  const columns = hasHeader ? head.map((f, i) => f.trim() || `c${i}`) : head.map((_, i) => `c${i}`);
  const cols = columns.length;
  let values = new Float64Array(Math.max(1024, cols * 1024));
  let rows = 0;
  if (!hasHeader) {
    // The first line is data too: read it again.
    pos = first[0];
    line--;
  }
  for (let r: [number, number] | false; (r = next()); ) {
    // Long lines count by their bytes: a file of a few lines of a megabyte each is no quicker.
    if (++sinceCheck === 1024 || r[0] - checkedAt >= 1 << 18) {
      sinceCheck = 0;
      checkedAt = r[0];
      if (performance.now() - sliceStart >= sliceMs) {
        yield;
        sliceStart = performance.now();
      }
    }
    if (values.length < (rows + 1) * cols) {
      const grown = new Float64Array(values.length * 2);
      grown.set(values);
      values = grown;
    }
    const at = rows * cols;
    const fast = fastRow(b, r[0], r[1], values, at, cols);
    if (fast === BLANK) continue;
    if (fast === SLOW) {
      // Fields counted on the bytes before the line becomes a string and a string per field:
      // a line of 62 million commas held the loop 4 s and took ~1 GB that way.
      let count = 1;
      for (let i = r[0]; i < r[1] && count <= MAX_COLUMNS; i++) if (b[i] === 44) count++;
      if (count > cols) {
        const many = count > MAX_COLUMNS ? `more than ${MAX_COLUMNS.toLocaleString("en-US")} fields` : `${count} fields`;
        throw new Error(`line ${line} has ${many}, the ${hasHeader ? "header" : "first line"} ${cols}`);
      }
      const l = text(r);
      if (l.trim() === "") continue;
      const fields = l.split(",");
      if (fields.length !== cols) throw new Error(`line ${line} has ${fields.length} field${fields.length === 1 ? "" : "s"}, the ${hasHeader ? "header" : "first line"} ${cols}`);
      for (let c = 0; c < cols; c++) {
        const v = fields[c].trim() === "" ? NaN : Number(fields[c]);
        if (!Number.isFinite(v)) throw new Error(`line ${line}, column ${c + 1} (${columns[c]}): ${JSON.stringify(fields[c].slice(0, 40))} is not a number`);
        values[at + c] = v;
      }
    }
    rows++;
  }
  if (!rows) throw new Error("it has a header but no rows");
  return { columns, rows, values: values.subarray(0, rows * cols) };
}

/** Columns a CSV input may have (each unit's ctx.columns names them all). */
export const MAX_COLUMNS = 100_000;

const BLANK = 0;
const SLOW = 1;
const DONE = 2;

/** Exact doubles: a decimal of up to 15 digits times or over one of these rounds once, correctly (Clinger's fast path). */
const POW10 = Array.from({ length: 23 }, (_, i) => Number(`1e${i}`));

const isSpace = (c: number) => c === 32 || c === 9 || c === 13 || c === 11 || c === 12;

/** One line of ASCII plain decimals into values[at…]: BLANK, DONE, or SLOW when the line must be read as text. */
function fastRow(b: Buffer, from: number, to: number, values: Float64Array, at: number, cols: number): number {
  let i = from;
  while (i < to && isSpace(b[i])) i++;
  if (i === to) return BLANK;
  i = from;
  for (let c = 0; c < cols; c++) {
    while (i < to && (b[i] === 32 || b[i] === 9)) i++;
    let neg = false;
    if (b[i] === 45) neg = true, i++;
    else if (b[i] === 43) i++;
    let m = 0;
    let digits = 0;
    let significant = 0;
    let scale = 0;
    let dot = false;
    for (; i < to; i++) {
      const ch = b[i];
      if (ch >= 48 && ch <= 57) {
        digits++;
        if ((significant || ch !== 48) && ++significant > 15) return SLOW;
        m = m * 10 + (ch - 48);
        if (dot) scale--;
      } else if (ch === 46 && !dot) dot = true;
      else break;
    }
    if (!digits) return SLOW;
    if (i < to && (b[i] === 101 || b[i] === 69)) {
      i++;
      let eneg = false;
      if (b[i] === 45) eneg = true, i++;
      else if (b[i] === 43) i++;
      let e = 0;
      let ed = 0;
      for (; i < to && b[i] >= 48 && b[i] <= 57; i++) {
        e = e * 10 + (b[i] - 48);
        if (++ed > 3) return SLOW;
      }
      if (!ed) return SLOW;
      scale += eneg ? -e : e;
    }
    while (i < to && (b[i] === 32 || b[i] === 9)) i++;
    // The field ends here: a comma before the last field, the line's end after it.
    if (c < cols - 1 ? b[i] !== 44 || i >= to : i !== to) return SLOW;
    i++;
    if (scale < -22 || scale > 22) return SLOW;
    const v = scale === 0 ? m : scale > 0 ? m * POW10[scale] : m / POW10[-scale];
    values[at + c] = neg ? -v : v;
  }
  return DONE;
}

/** The table's rows cut into n contiguous shards (shard i: rows ⌊rows·i/n⌋ up to ⌊rows·(i+1)/n⌋), as bytes. */
export function shardRows(table: CsvTable, n: number): Buffer[] {
  const cols = table.columns.length;
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const from = Math.floor((table.rows * i) / n);
    const to = Math.floor((table.rows * (i + 1)) / n);
    const part = table.values.slice(from * cols, to * cols);
    out.push(Buffer.from(part.buffer, part.byteOffset, part.byteLength));
  }
  return out;
}
