import { z } from "zod";
import { BASE64_RE, base64ByteLength, decodeBase64, encodeBase64 } from "./base64";
import type { Kernel } from "./types";

/**
 * Reference CPU-ms per pixel (mapping, encoding), per iteration of the escape loop (timed
 * against pi's samples on Node 20: 0.48–0.54 of a sample), and per unit.
 */
export const MANDELBROT_MS_PER_PIXEL = 3e-5;
export const MANDELBROT_MS_PER_ITER = 2.6e-6;
export const MANDELBROT_MS_PER_UNIT = 0.5;

/**
 * A unit's work is estimated from a grid of the view's points, at most SAMPLE_SIDE a side,
 * each iterated up to SAMPLE_CAP times (a point still bounded then is taken to run to maxIter):
 * at most ~2M iterations, a few ms, once per submission. A fit on maxIter alone (it assumed a
 * pixel ran about 3% of maxIter) priced a view inside a bulb of the set at 1/60 of its work,
 * which volunteers computed for that price, and the server's checks of it ran out of time.
 */
const SAMPLE_SIDE = 24;
const SAMPLE_CAP = 2000;

/** Iterations the escape loop runs for c (0 inside the main cardioid and the period-2 bulb, tested first). */
function loopIterations(cx: number, cy: number, cap: number, maxIter: number): number {
  const n = escapeCount(cx, cy, cap);
  if (n < cap) return n;
  const q = (cx - 0.25) * (cx - 0.25) + cy * cy;
  if (q * (q + (cx - 0.25)) <= 0.25 * cy * cy || (cx + 1) * (cx + 1) + cy * cy <= 0.0625) return 0;
  return maxIter;
}

/** Mean loop iterations per pixel on sampled rows of the view, by row. */
function sampledRows(p: MandelbrotParams): Array<{ y: number; iters: number }> {
  const rows = Math.min(SAMPLE_SIDE, p.height);
  const cols = Math.min(SAMPLE_SIDE, p.width);
  const step = pixelStep(p);
  const cap = Math.min(p.maxIter, SAMPLE_CAP);
  const out: Array<{ y: number; iters: number }> = [];
  for (let r = 0; r < rows; r++) {
    const py = Math.floor(((r + 0.5) * p.height) / rows);
    const cy = p.centerY - (py - p.height / 2) * step;
    let sum = 0;
    for (let c = 0; c < cols; c++) {
      const px = Math.floor(((c + 0.5) * p.width) / cols);
      sum += loopIterations(p.centerX + (px - p.width / 2) * step, cy, cap, p.maxIter);
    }
    out.push({ y: py, iters: sum / cols });
  }
  return out;
}

/** The sampled rows' mean iterations within [y0, y1), or the nearest sampled row's. */
function bandIterations(rows: Array<{ y: number; iters: number }>, y0: number, y1: number): number {
  let sum = 0;
  let n = 0;
  for (const r of rows) if (r.y >= y0 && r.y < y1) (sum += r.iters), n++;
  if (n) return sum / n;
  const mid = (y0 + y1) / 2;
  let best = rows[0]!;
  for (const r of rows) if (Math.abs(r.y - mid) < Math.abs(best.y - mid)) best = r;
  return best.iters;
}

const MAX_SIDE = 4096;

export const mandelbrotParams = z.object({
  /** Image width in pixels, 16..4096. */
  width: z.number().int().min(16).max(MAX_SIDE).default(800),
  /** Image height in pixels, 16..4096. */
  height: z.number().int().min(16).max(MAX_SIDE).default(600),
  /** Iteration cap, 10..10000 (fits the u16 pixel encoding). */
  maxIter: z.number().int().min(10).max(10_000).default(400),
  /** View centre, within the plane region that matters (|x|, |y| <= 4). */
  centerX: z.number().min(-4).max(4).default(-0.5),
  centerY: z.number().min(-4).max(4).default(0),
  /** Width of the view in the complex plane: 1e-12 (where doubles run out) .. 16. */
  scale: z.number().min(1e-12).max(16).default(3),
})
  // A parameter it does not know is refused by name, not ignored (a typo would go unnoticed).
  .strict();
export type MandelbrotParams = z.infer<typeof mandelbrotParams>;

export interface MandelbrotInput {
  y0: number;
  y1: number;
}

/** Largest base64 length of a whole 4096×4096 u16 image. */
const MAX_DATA_CHARS = Math.ceil((MAX_SIDE * MAX_SIDE * 2) / 3) * 4;

export const mandelbrotOutput = z
  .object({
    y0: z.number().int().min(0).max(MAX_SIDE - 1),
    y1: z.number().int().min(1).max(MAX_SIDE),
    data: z.string().max(MAX_DATA_CHARS).regex(BASE64_RE),
  })
  .strict()
  .refine((o) => o.y1 > o.y0, { message: "empty band" })
  // Without the width we can only check the band holds a whole number of rows of a legal width.
  .refine(
    (o) => {
      const bytes = base64ByteLength(o.data);
      const perWidth = (o.y1 - o.y0) * 2;
      const width = bytes / perWidth;
      return Number.isInteger(width) && width >= 16 && width <= MAX_SIDE;
    },
    { message: "data length does not match the band" },
  );
export type MandelbrotOutput = z.infer<typeof mandelbrotOutput>;

export interface MandelbrotResult {
  width: number;
  height: number;
  maxIter: number;
  encoding: "u16le-base64";
  /** Row-major escape counts, `maxIter` for points taken to be inside the set. */
  data: string;
}

/**
 * Iterations before |z| exceeds 2, or maxIter if it never does: 0 means c itself lies
 * outside the radius-2 disc.
 */
export function escapeCount(cx: number, cy: number, maxIter: number): number {
  // Main cardioid and period-2 bulb: never escape, and they are most of the black area.
  const q = (cx - 0.25) * (cx - 0.25) + cy * cy;
  if (q * (q + (cx - 0.25)) <= 0.25 * cy * cy) return maxIter;
  if ((cx + 1) * (cx + 1) + cy * cy <= 0.0625) return maxIter;
  let x = 0;
  let y = 0;
  let x2 = 0;
  let y2 = 0;
  let i = 0;
  for (; i < maxIter; i++) {
    y = 2 * x * y + cy;
    x = x2 - y2 + cx;
    x2 = x * x;
    y2 = y * y;
    if (x2 + y2 > 4) break;
  }
  return i;
}

/** Pixel (px, py) maps to c = centre + (p - size/2) · step, so the centre is a pixel. */
function pixelStep(p: MandelbrotParams): number {
  return p.scale / p.width;
}

export const mandelbrot: Kernel<MandelbrotParams, MandelbrotInput, MandelbrotOutput, MandelbrotResult> = {
  name: "mandelbrot",
  title: "Mandelbrot image",
  description:
    "Renders escape-time counts of the Mandelbrot set, one band of rows per work unit.",
  params: mandelbrotParams,
  output: mandelbrotOutput,

  maxChunks: (p) => p.height,

  split(p, chunks) {
    const n = Math.max(1, Math.min(Math.floor(chunks), p.height));
    const base = Math.floor(p.height / n);
    const extra = p.height - base * n;
    const rows = sampledRows(p);
    const units: Array<{ input: MandelbrotInput; work: number }> = [];
    let y0 = 0;
    for (let i = 0; i < n; i++) {
      const y1 = y0 + base + (i < extra ? 1 : 0);
      const perPixel = MANDELBROT_MS_PER_PIXEL + MANDELBROT_MS_PER_ITER * bandIterations(rows, y0, y1);
      units.push({ input: { y0, y1 }, work: MANDELBROT_MS_PER_UNIT + (y1 - y0) * p.width * perPixel });
      y0 = y1;
    }
    return units;
  },

  run(p, { y0, y1 }) {
    if (!(Number.isInteger(y0) && Number.isInteger(y1) && 0 <= y0 && y0 < y1 && y1 <= p.height)) {
      throw new Error(`mandelbrot: bad band [${y0}, ${y1}) for height ${p.height}`);
    }
    const step = pixelStep(p);
    const bytes = new Uint8Array((y1 - y0) * p.width * 2);
    let o = 0;
    for (let py = y0; py < y1; py++) {
      // Image rows go downwards, the imaginary axis upwards.
      const cy = p.centerY - (py - p.height / 2) * step;
      for (let px = 0; px < p.width; px++) {
        const n = escapeCount(p.centerX + (px - p.width / 2) * step, cy, p.maxIter);
        bytes[o++] = n & 255;
        bytes[o++] = n >>> 8;
      }
    }
    return { y0, y1, data: encodeBase64(bytes) };
  },

  reduce(p, outputs) {
    const rowBytes = p.width * 2;
    const image = new Uint8Array(p.height * rowBytes);
    let next = 0;
    for (const band of outputs) {
      if (band.y0 !== next || band.y1 <= band.y0 || band.y1 > p.height) {
        throw new Error(`mandelbrot: expected a band starting at row ${next}, got [${band.y0}, ${band.y1})`);
      }
      const bytes = decodeBase64(band.data);
      if (bytes.length !== (band.y1 - band.y0) * rowBytes) {
        throw new Error(`mandelbrot: band [${band.y0}, ${band.y1}) has ${bytes.length} bytes`);
      }
      for (let i = 0; i < bytes.length; i += 2) {
        if ((bytes[i] | (bytes[i + 1] << 8)) > p.maxIter) {
          throw new Error(`mandelbrot: band [${band.y0}, ${band.y1}) has a count above maxIter`);
        }
      }
      image.set(bytes, band.y0 * rowBytes);
      next = band.y1;
    }
    if (next !== p.height) throw new Error(`mandelbrot: rows ${next}..${p.height - 1} are missing`);
    return { width: p.width, height: p.height, maxIter: p.maxIter, encoding: "u16le-base64", data: encodeBase64(image) };
  },
};
