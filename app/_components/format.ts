/** Millicredits as credits, e.g. 1234 → "1.234". */
export const credits = (millicredits: number) =>
  (millicredits / 1000).toLocaleString("en-US", { minimumFractionDigits: 0, maximumFractionDigits: 3 });

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 1) return "<1 s";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export const when = (d: Date | string) => new Date(d).toLocaleString();
