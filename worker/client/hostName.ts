import { z } from "zod";

// A host's name, as the leaderboard, /account and /admin show it. By default it says what the
// host is ("Chrome on Linux · 3f9a": browser and OS from the user agent, or "CLI on Linux"
// for `tabgrid volunteer`, and the first characters of the volunteer id so that two alike
// hosts can be told apart); its owner may choose another (/account, `--name`).

export const HOST_NAME_MAX = 60;

// Control characters, the bidirectional overrides (which can make a name read backwards) and
// zero-width characters (which make two names that read the same differ). Team names too.
export const FORBIDDEN_IN_NAMES = /[\p{Cc}\u200B-\u200F\u202A-\u202E\u2060-\u2069\uFEFF]/u;
const FORBIDDEN = FORBIDDEN_IN_NAMES;

/** A name a person chose: trimmed, 1 to 60 characters, no control characters. */
export const hostNameSchema = z
  .string()
  .trim()
  .min(1, "A host name cannot be empty.")
  .max(HOST_NAME_MAX, `A host name is at most ${HOST_NAME_MAX} characters.`)
  .refine((s) => !FORBIDDEN.test(s), "A host name cannot contain control characters.");

/** The first reason `name` is not a valid host name, or null when it is. */
export function hostNameProblem(name: string): string | null {
  const r = hostNameSchema.safeParse(name);
  return r.success ? null : r.error.issues[0].message;
}

const shortId = (volunteerId: string) => volunteerId.slice(0, 4);

// Order matters: Edge, Opera and Samsung Internet also say "Chrome", Chrome also says
// "Safari", and on iOS every browser is Safari underneath but names itself.
const BROWSERS: Array<[RegExp, string]> = [
  [/\b(Edg|EdgA|EdgiOS|Edge)\//, "Edge"],
  [/\b(OPR|OPiOS|Opera)\//, "Opera"],
  [/\bSamsungBrowser\//, "Samsung Internet"],
  [/\b(Firefox|FxiOS)\//, "Firefox"],
  [/\b(Chrome|CriOS|HeadlessChrome)\//, "Chrome"],
  [/\bChromium\//, "Chromium"],
  [/\bVersion\/[\d.]+.*\bSafari\//, "Safari"],
];

const SYSTEMS: Array<[RegExp, string]> = [
  [/\bWindows\b/, "Windows"],
  [/\bAndroid\b/, "Android"],
  [/\b(iPhone|iPad|iPod)\b/, "iOS"],
  [/\bCrOS\b/, "ChromeOS"],
  [/\b(Macintosh|Mac OS X)\b/, "macOS"],
  [/\b(Linux|X11)\b/, "Linux"],
];

/** The browser and operating system a user agent string names, each null when unknown. */
export function describeUserAgent(userAgent: string): { browser: string | null; os: string | null } {
  const find = (table: Array<[RegExp, string]>) => table.find(([re]) => re.test(userAgent))?.[1] ?? null;
  return { browser: find(BROWSERS), os: find(SYSTEMS) };
}

/** "Chrome on Linux · 3f9a"; "Browser on Linux · 3f9a", "Browser · 3f9a" for what it cannot tell. */
export function browserHostName(userAgent: string, volunteerId: string): string {
  const { browser, os } = describeUserAgent(userAgent);
  return `${browser ?? "Browser"}${os ? ` on ${os}` : ""} · ${shortId(volunteerId)}`;
}

const PLATFORMS: Record<string, string> = {
  linux: "Linux", darwin: "macOS", win32: "Windows", freebsd: "FreeBSD", openbsd: "OpenBSD", android: "Android", sunos: "SunOS", aix: "AIX",
};

/** "CLI on Linux · 3f9a", from Node's process.platform. */
export function cliHostName(platform: string, volunteerId: string): string {
  const os = PLATFORMS[platform] ?? platform.slice(0, 20);
  return `CLI${os ? ` on ${os}` : ""} · ${shortId(volunteerId)}`;
}

/**
 * The name a hello makes the server store: the one the client sent when it is a valid name;
 * from a user agent an older browser tab sent as its name; else a default for its kind.
 */
export function helloHostName(hello: { volunteerId: string; agent?: "browser" | "node"; name?: string }): string {
  const name = hello.name === undefined ? undefined : hostNameSchema.safeParse(hello.name);
  if (name?.success && !/^Mozilla\//.test(name.data)) return name.data;
  if (hello.agent !== "node") return browserHostName(hello.name ?? "", hello.volunteerId);
  return `CLI · ${shortId(hello.volunteerId)}`;
}
