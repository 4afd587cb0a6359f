import { kmeans } from "./kmeans";
import { mandelbrot } from "./mandelbrot";
import { pi } from "./pi";
import { primes } from "./primes";
import type { Kernel } from "./types";

export type { Kernel } from "./types";

export const kernels: Record<string, Kernel> = {
  [pi.name]: pi,
  [mandelbrot.name]: mandelbrot,
  [primes.name]: primes,
  [kmeans.name]: kmeans,
};

export function getKernel(name: string): Kernel | undefined {
  // hasOwn so that names like "constructor" or "__proto__" are not kernels.
  return Object.hasOwn(kernels, name) ? kernels[name] : undefined;
}
