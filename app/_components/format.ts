/** Millicredits as credits, e.g. 1234 → "1.234". */
export const credits = (millicredits: number) =>
  (millicredits / 1000).toLocaleString("en-US", { minimumFractionDigits: 0, maximumFractionDigits: 3 });

/** A ratio, as "2.00×"; two significant digits below 0.1 (an estimate 300 times too high is "0.0033×", not "0.00×"). */
export const times = (r: number) => `${r > 0 && r < 0.1 ? r.toPrecision(2) : r.toFixed(2)}×`;

/** A count with its noun, singular only for exactly one: "1 task", "0 tasks", "2.5 credits". */
export function plural(n: number, one: string, many = `${one}s`, shown: string = String(n)): string {
  return `${shown} ${n === 1 ? one : many}`;
}

/** Millicredits with their noun: 1000 → "1 credit", 1500 → "1.5 credits". */
export const creditCount = (millicredits: number) => plural(millicredits / 1000, "credit", "credits", credits(millicredits));

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 1) return "<1 s";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// The browser's language and time zone. These pages are client components that render dates
// only once their data has loaded, after hydration, so the server's locale never shows.
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateTimeSeconds = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

/** A moment as the user reads dates, e.g. "21 Nov 2026, 10:17" or "Nov 21, 2026, 10:17 AM". */
export function when(d: Date | string | number, opts: { seconds?: boolean } = {}): string {
  const date = new Date(d);
  if (Number.isNaN(date.getTime())) return String(d);
  return (opts.seconds ? dateTimeSeconds : dateTime).format(date);
}

/** The time of day only, for things that happened in the last hours. */
export function clockTime(d: Date | string | number): string {
  const date = new Date(d);
  return Number.isNaN(date.getTime()) ? String(d) : timeOnly.format(date);
}

/** A UTC calendar day ("2026-11-21") as the user writes a short date, e.g. "Nov 21". */
export function shortDay(day: string): string {
  const date = new Date(`${day}T00:00:00Z`);
  return Number.isNaN(date.getTime()) ? day : date.toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
}

/** A size in bytes as people read it: "812 B", "3.4 KiB", "61.0 MiB", "1.0 GiB". */
export function bytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}
