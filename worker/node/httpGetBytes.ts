import http from "node:http";
import https from "node:https";
import type { BlobDownload } from "../client/prepareTask";

// The CLI volunteer's blob downloads. Node's fetch (undici, through web streams) took 2.5× as
// long as node:http for the same bytes: 8 shards of 1.7 MB fetched at once from a local server,
// the slowest arrived after ~105 ms with fetch and ~44 ms with http.get. A job's first round
// is those downloads, all at once.

/** No answer for this long (the connection or the body stalled): the download fails. */
const IDLE_MS = 60_000;
/** Largest body read: a blob is at most a data file (MAX_DATA_BYTES, 64 MiB by default). */
const MAX_BYTES = 1024 * 1024 * 1024;

/** GETs `url` into one buffer (of the declared length when the server gives one, as for blobs). */
export const httpGetBytes: BlobDownload = (url, headers) =>
  new Promise((resolve, reject) => {
    const get = url.startsWith("https:") ? https.get : http.get;
    const req = get(url, { headers }, (res) => {
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        res.resume();
        resolve({ status });
        return;
      }
      const declared = Number(res.headers["content-length"]);
      const known = Number.isSafeInteger(declared) && declared >= 0;
      if (known && declared > MAX_BYTES) return req.destroy(new Error(`the server declared ${declared} bytes, more than the ${MAX_BYTES} read`));
      // Not from Buffer's shared pool: the bytes travel on (to a program process) with their ArrayBuffer.
      let whole: Buffer | undefined;
      try {
        whole = known ? Buffer.allocUnsafeSlow(declared) : undefined;
      } catch (e) {
        // Thrown here it would end the volunteer: this callback runs in the HTTP parser's turn.
        return req.destroy(e as Error);
      }
      const parts: Buffer[] = [];
      let got = 0;
      res.on("data", (chunk: Buffer) => {
        if (whole) {
          if (got + chunk.length > declared) return req.destroy(new Error(`the server sent more than the ${declared} bytes it declared`));
          chunk.copy(whole, got);
        } else {
          if (got + chunk.length > MAX_BYTES) return req.destroy(new Error(`the server sent more than the ${MAX_BYTES} bytes read`));
          parts.push(chunk);
        }
        got += chunk.length;
      });
      res.on("end", () => {
        if (whole && got !== declared) reject(new Error(`the connection closed after ${got} of ${declared} bytes`));
        else {
          try {
            resolve({ status, bytes: whole ? new Uint8Array(whole.buffer as ArrayBuffer, whole.byteOffset, whole.length) : joined(parts, got) });
          } catch (e) {
            reject(e as Error);
          }
        }
      });
      res.on("error", reject);
      res.on("close", () => {
        if (!res.complete) reject(new Error(`the connection closed after ${got} bytes`));
      });
    });
    req.on("error", reject);
    req.setTimeout(IDLE_MS, () => req.destroy(new Error(`no answer for ${IDLE_MS / 1000} s`)));
  });

function joined(parts: Buffer[], length: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
