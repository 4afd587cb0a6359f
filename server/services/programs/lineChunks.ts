/**
 * A text file cut into `n` chunks of whole lines, as the "lines" input mode gives them to
 * units: lines split at "\n" or "\r\n", each chunk its lines joined by "\n". Worked on the
 * bytes, a megabyte at a time with a turn of the event loop between megabytes: the file as
 * one string split into a string per line held the loop ~7 s and took ~1.8 GB for a 60 MB
 * file of empty lines (a job of 1 millicredit).
 */
const STEP = 1 << 20;

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Visits each "\n" in order (its offset and its count from 1); stops early when `visit` returns false. */
async function eachNewline(bytes: Uint8Array, visit: (at: number, k: number) => boolean): Promise<number> {
  let k = 0;
  for (let start = 0; start < bytes.length; start += STEP) {
    const end = Math.min(bytes.length, start + STEP);
    for (let i = start; i < end; i++) {
      if (bytes[i] === 10 && !visit(i, ++k)) return k;
    }
    if (end < bytes.length) await turn();
  }
  return k;
}

/** The file's lines as the mode counts them: a last line ended by a newline is not followed by an empty one. */
export async function countLines(bytes: Uint8Array): Promise<number> {
  const newlines = await eachNewline(bytes, () => true);
  return bytes.length === 0 ? 0 : bytes[bytes.length - 1] === 10 ? newlines : newlines + 1;
}

/** Chunk `i` of `n` holds lines [floor(lines·i/n), floor(lines·(i+1)/n)); `lines` is countLines(bytes). */
export async function lineChunks(bytes: Uint8Array, lines: number, n: number): Promise<Uint8Array[]> {
  // Where each chunk's first line starts: after the (first line)-th newline.
  const firsts = Array.from({ length: n + 1 }, (_, i) => Math.floor((lines * i) / n));
  const starts = new Array<number>(n + 1).fill(bytes.length);
  let next = 0;
  while (next <= n && firsts[next] === 0) starts[next++] = 0;
  if (next <= n) {
    await eachNewline(bytes, (at, k) => {
      while (next <= n && firsts[next] === k) starts[next++] = at + 1;
      return next <= n;
    });
  }
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    // Up to the next chunk's first line, less the newline (and its "\r") that ends the last line.
    let end = starts[i + 1];
    if (end > starts[i] && bytes[end - 1] === 10) {
      end--;
      if (end > starts[i] && bytes[end - 1] === 13) end--;
    }
    out.push(withoutCarriageReturns(bytes.subarray(starts[i], end)));
    if (i % 64 === 63) await turn();
  }
  return out;
}

/** The chunk with each "\r\n" made "\n" (a copy only if there is one). */
function withoutCarriageReturns(part: Uint8Array): Uint8Array {
  if (part.indexOf(13) < 0) return part;
  const out = new Uint8Array(part.length);
  let n = 0;
  for (let i = 0; i < part.length; i++) {
    if (part[i] === 13 && part[i + 1] === 10) continue;
    out[n++] = part[i];
  }
  return out.subarray(0, n);
}
