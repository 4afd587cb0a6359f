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
 */
export function parseCsv(text: string): CsvTable {
  const lines = text.split(/\r?\n/);
  let first = 0;
  while (first < lines.length && lines[first].trim() === "") first++;
  if (first === lines.length) throw new Error("it is empty");
  const head = lines[first].split(",");
  const hasHeader = head.some((f) => !isNumber(f));
  const columns = hasHeader ? head.map((f, i) => f.trim() || `c${i}`) : head.map((_, i) => `c${i}`);
  const cols = columns.length;
  let values = new Float64Array(Math.max(1024, cols * 1024));
  let rows = 0;
  for (let l = hasHeader ? first + 1 : first; l < lines.length; l++) {
    const line = lines[l];
    if (line.trim() === "") continue;
    const fields = line.split(",");
    if (fields.length !== cols) throw new Error(`line ${l + 1} has ${fields.length} fields, the ${hasHeader ? "header" : "first line"} ${cols}`);
    if (values.length < (rows + 1) * cols) {
      const grown = new Float64Array(values.length * 2);
      grown.set(values);
      values = grown;
    }
    for (let c = 0; c < cols; c++) {
      const v = fields[c].trim() === "" ? NaN : Number(fields[c]);
      if (!Number.isFinite(v)) throw new Error(`line ${l + 1}, column ${c + 1} (${columns[c]}): ${JSON.stringify(fields[c].slice(0, 40))} is not a number`);
      values[rows * cols + c] = v;
    }
    rows++;
  }
  if (!rows) throw new Error("it has a header but no rows");
  return { columns, rows, values: values.subarray(0, rows * cols) };
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
