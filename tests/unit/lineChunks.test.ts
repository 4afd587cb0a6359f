import { describe, expect, it } from "vitest";
import { countLines, lineChunks } from "../../server/services/programs/lineChunks";
import { seededRandom } from "../helpers/random";

/** The "lines" mode as it was written first: the whole file as a string, split into lines. */
function reference(text: string, n: number) {
  const lines = text.split(/\r?\n/);
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  const parts = Array.from({ length: n }, (_, i) => lines.slice(Math.floor((lines.length * i) / n), Math.floor((lines.length * (i + 1)) / n)).join("\n"));
  return { lines: lines.length, parts };
}

async function chunks(text: string, n: number) {
  const bytes = new TextEncoder().encode(text);
  const lines = await countLines(bytes);
  if (lines < n) return { lines, parts: [] as string[] };
  return { lines, parts: (await lineChunks(bytes, lines, n)).map((p) => new TextDecoder().decode(p)) };
}

describe("lineChunks", () => {
  it("cuts as splitting the text into lines did: CRLF, a lone CR, empty lines, no final newline, any chunk count", async () => {
    const cases = ["a\nb\nc\n", "a\r\nb\r\nc", "\n\n\n\n", "one line", "x\r\ny\rz\n\nw\r\n", "é\nü\n😀\n", "a\n\r\nb\n\n"];
    const random = seededRandom(7);
    const pieces = ["a", "bc", "\n", "\r\n", "\r", "", "é", " "];
    for (let i = 0; i < 200; i++) cases.push(Array.from({ length: Math.floor(random() * 40) }, () => pieces[Math.floor(random() * pieces.length)]).join(""));
    for (const text of cases) {
      const want = reference(text, 1);
      expect((await chunks(text, 1)).lines, JSON.stringify(text)).toBe(want.lines);
      for (let n = 1; n <= Math.min(want.lines, 7); n++) {
        expect(await chunks(text, n), `${JSON.stringify(text)} in ${n}`).toEqual(reference(text, n));
      }
    }
  });

  it("counts and cuts 30 MB of empty lines without holding the event loop", async () => {
    const bytes = new Uint8Array(30 * 2 ** 20).fill(10);
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    const lines = await countLines(bytes);
    const parts = await lineChunks(bytes, lines, 3);
    clearInterval(ticker);
    expect(lines).toBe(bytes.length);
    expect(parts.map((p) => p.length)).toEqual([bytes.length / 3 - 1, bytes.length / 3 - 1, bytes.length / 3 - 1]);
    // A turn of the loop between megabytes: timers ran while the file was worked on.
    expect(turns).toBeGreaterThan(5);
  });
});
