import { SourceMap } from "node:module";
import type { AppDeps } from "../deps";
import { programFileName, SCRIPT_FILE } from "../../../worker/sandbox/compileJs";

// A program's errors come back from the sandboxes located in the compiled script volunteers
// run ("program.js", line and column of esbuild's output). Shown to the consumer, they say
// where in the file they uploaded instead (`myprog.js:3:11`), through the source map stored
// with the program at upload.

const AT_COMPILED = /\(at line (\d+), column (\d+) of the compiled program\)/g;
const FRAME = new RegExp(`\\b${SCRIPT_FILE.replace(".", "\\.")}:(\\d+)(?::(\\d+))?`, "g");

/** `file:line:column` in the uploaded source of a 1-based position in the script, or null. */
function origin(map: SourceMap | null, file: string, line: number, column: number): string | null {
  if (!map || line < 1) return null;
  const e = map.findEntry(line - 1, Math.max(0, column - 1)) as { originalLine?: number; originalColumn?: number };
  if (typeof e.originalLine !== "number" || typeof e.originalColumn !== "number") return null;
  return `${file}:${e.originalLine + 1}:${e.originalColumn + 1}`;
}

/**
 * Rewrites the locations in a program's error message: "(at line 25, column 15 of the
 * compiled program)" becomes "(at myprog.js:5:11)", and stack frames' "program.js:25:15"
 * become "myprog.js:5:11". Without a source map (programs uploaded before there was one)
 * only the file is named.
 */
export function locateProgramError(error: string, fileName: string, sourceMap: string | null): string {
  const file = programFileName(fileName);
  let map: SourceMap | null = null;
  try {
    map = sourceMap ? new SourceMap(JSON.parse(sourceMap)) : null;
  } catch {
    map = null;
  }
  return error
    .replace(AT_COMPILED, (all, l: string, c: string) => {
      const at = origin(map, file, Number(l), Number(c));
      return at ? `(at ${at})` : `(at line ${l}, column ${c} of the compiled ${file})`;
    })
    .replace(FRAME, (all, l: string, c: string | undefined) => origin(map, file, Number(l), Number(c ?? 1)) ?? all);
}

const MAPS_KEPT = 16;
const maps = new Map<string, string>();

/** A failed program job's error with its locations in the uploaded file (see locateProgramError). */
export async function programJobError(deps: Pick<AppDeps, "db" | "blobs">, jobId: string, error: string): Promise<string> {
  if (!/compiled program|\bprogram\.js:\d/.test(error)) return error;
  const row = await deps.db.job.findUnique({ where: { id: jobId }, select: { program: { select: { name: true, sourceMapHash: true } } } });
  const program = row?.program;
  if (!program) return error;
  let map: string | null = null;
  if (program.sourceMapHash) {
    map = maps.get(program.sourceMapHash) ?? null;
    if (map === null) {
      map = (await deps.blobs.get(program.sourceMapHash).catch(() => null))?.toString("utf8") ?? null;
      if (map !== null) {
        maps.set(program.sourceMapHash, map);
        if (maps.size > MAPS_KEPT) maps.delete(maps.keys().next().value!);
      }
    }
  }
  return locateProgramError(error, program.name, map);
}
