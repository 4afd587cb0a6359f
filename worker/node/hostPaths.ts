// Error messages leave the volunteer for the server (and the consumer's job page): whatever
// produced them, they must not carry the volunteer's file paths. The sandbox keeps host paths
// away from programs in the first place (worker/sandbox/vmHost.ts); this is the last check,
// on every message a program task fails with.

const HOST_PATH = new RegExp(
  [
    String.raw`\bfile:\/\/[^\s'"\x60()<>]*`, // file URLs
    String.raw`\bnode:internal\/[\w./-]*(?::\d+)*`, // Node's own modules
    String.raw`(?<![\w.:/\\~-])~?(?:\/[\w.@+~-]+){2,}\/?(?::\d+)*`, // absolute POSIX paths of two segments or more
    String.raw`\b[A-Za-z]:\\[^\s'"\x60()<>]*`, // Windows paths
    String.raw`\\\\[\w.$-]+\\[^\s'"\x60()<>]*`, // UNC paths
  ].join("|"),
  "g",
);

/** `message` with anything that looks like a host file path replaced by `<path>`. */
export function scrubHostPaths(message: string): string {
  return message.replace(HOST_PATH, "<path>");
}

/** An Error with a scrubbed message (the same Error when there was nothing to scrub). */
export function scrubError(e: unknown): Error {
  const error = e instanceof Error ? e : new Error(String(e));
  const message = scrubHostPaths(error.message);
  if (message === error.message) return error;
  const clean = new Error(message);
  clean.name = error.name;
  return clean;
}
