import fs from "node:fs";

/** Files kept for all but volunteer sockets: the database, blobs, pages, API and tRPC sockets. */
export const FILES_KEPT = 1024;

/** The process's limit of open files (Node raises its soft limit to the hard one), or undefined where /proc does not say. */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync("/proc/self/limits", "utf8"));
    return m && m[1] !== "unlimited" ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Volunteer sockets to accept at most: MAX_VOLUNTEER_CONNECTIONS, but FILES_KEPT below the
 * open-file limit. At 20,000 sockets on a limit of 20,000, one client's sockets left the
 * server unable to accept anything (health included) or open a file (EMFILE).
 */
export function volunteerSocketCap(configured: number, limit: number | undefined): number {
  return limit === undefined ? configured : Math.max(1, Math.min(configured, limit - FILES_KEPT));
}
