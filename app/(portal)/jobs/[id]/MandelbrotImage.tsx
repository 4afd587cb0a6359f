"use client";
import { useEffect, useRef } from "react";

interface Image {
  width: number;
  height: number;
  maxIter: number;
  data: string;
}

/** Paints escape counts (u16 little-endian, base64) with a smooth cyclic palette; inside is black. */
export function MandelbrotImage({ image }: { image: Image }) {
  const ref = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const canvas = ref.current;
    const ctx = canvas?.getContext("2d");
    if (!canvas || !ctx) return;
    const bytes = Uint8Array.from(atob(image.data), (c) => c.charCodeAt(0));
    const counts = new Uint16Array(bytes.buffer, 0, image.width * image.height);
    const pixels = ctx.createImageData(image.width, image.height);
    for (let i = 0; i < counts.length; i++) {
      const n = counts[i];
      const o = i * 4;
      if (n >= image.maxIter) {
        pixels.data[o] = pixels.data[o + 1] = pixels.data[o + 2] = 0;
      } else {
        const t = Math.sqrt(n / image.maxIter);
        pixels.data[o] = 255 * (0.5 + 0.5 * Math.cos(6.2832 * (t + 0.0)));
        pixels.data[o + 1] = 255 * (0.5 + 0.5 * Math.cos(6.2832 * (t + 0.15)));
        pixels.data[o + 2] = 255 * (0.5 + 0.5 * Math.cos(6.2832 * (t + 0.3)));
      }
      pixels.data[o + 3] = 255;
    }
    ctx.putImageData(pixels, 0, 0);
  }, [image]);
  return <canvas ref={ref} width={image.width} height={image.height} className="mandelbrot" data-testid="mandelbrot" />;
}
