import fs from "node:fs";

/** Tabgrid's version, from package.json (read once; "unknown" if it cannot be read). */
export const version: string = (() => {
  try {
    return (JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: string }).version ?? "unknown";
  } catch {
    return "unknown";
  }
})();
