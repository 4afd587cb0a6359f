import fs from "node:fs";
import path from "node:path";
import { UsageError } from "./args";
import type { CsvSummary } from "../server/services/programs/csvTables";

/** POSTs a file to /api/programs or /api/data (`asCsv`: to be read as a CSV table) and returns the server's JSON answer. */
export async function uploadFile(
  conn: { url: string; apiKey?: string }, kind: "programs" | "data", file: string, opts: { asCsv?: boolean } = {},
): Promise<{ hash: string; name: string; size: number; csv?: CsvSummary }> {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const res = await fetch(`${conn.url}/api/${kind}?name=${encodeURIComponent(path.basename(file))}${opts.asCsv ? "&as=csv" : ""}`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream", ...(conn.apiKey ? { authorization: `Bearer ${conn.apiKey}` } : {}) },
    body: new Uint8Array(bytes),
  });
  const body = (await res.json().catch(() => ({}))) as { error?: string; hash: string; name: string; size: number; csv?: CsvSummary };
  if (!res.ok) throw new Error(body.error ?? `upload of ${file} failed with HTTP ${res.status}`);
  return body;
}
