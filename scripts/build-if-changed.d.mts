// Types of scripts/build-if-changed.mjs for the tests.
export const STAMP: string;
export interface Stamp {
  fingerprint: string;
  buildId: string | null;
  builtAt: string;
  node?: string;
}
export interface Outputs {
  buildId: string | null;
  missing: string[];
}
export function inputFiles(root: string): string[];
export function fingerprint(
  root: string,
  options?: { env?: Record<string, string | undefined>; nodeVersion?: string; platform?: string },
): { hash: string; files: number };
export function readStamp(root: string): Stamp | null;
export function writeStamp(root: string, stamp: Stamp): void;
export function inspectOutputs(root: string): Outputs;
export function decide(input: { force?: boolean; stamp: Stamp | null; current: string; outputs: Outputs }): {
  build: boolean;
  reason: string;
};
