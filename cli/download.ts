import fs from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream } from "node:stream/web";

/**
 * Saves a job's result.json or units.json to a file as the server streams it (either may be
 * hundreds of MB): into a temporary file first, renamed once complete.
 */
export async function downloadJobFile(conn: { url: string; apiKey?: string }, jobId: string, which: "result" | "units", file: string): Promise<void> {
  const res = await fetch(`${conn.url}/api/jobs/${encodeURIComponent(jobId)}/${which}.json`, {
    headers: conn.apiKey ? { authorization: `Bearer ${conn.apiKey}` } : {},
  });
  if (!res.ok || !res.body) {
    const body = (await res.json().catch(() => ({}))) as { error?: string };
    throw new Error(body.error ?? `downloading the job's ${which}.json failed with HTTP ${res.status}`);
  }
  const tmp = `${file}.${process.pid}.part`;
  try {
    await pipeline(Readable.fromWeb(res.body as ReadableStream<Uint8Array>), fs.createWriteStream(tmp));
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
