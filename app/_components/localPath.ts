/**
 * Where to go after signing in: `next` if it is a path on this site, else `fallback`.
 * "//evil.example" and "/\evil.example" start with "/" too, but browsers read them as
 * another host (a protocol-relative URL): a link to /signin?callbackUrl=//evil.example
 * would have sent a user who signed in there.
 */
export function localPath(next: string | null | undefined, fallback = "/jobs"): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return fallback;
  // Tabs and newlines are dropped by URL parsers: "/\t/evil.example" is "//evil.example" too.
  return /[\t\n\r]/.test(next) ? fallback : next;
}
