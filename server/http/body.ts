import type { IncomingMessage } from "node:http";

export class BodyTooLarge extends Error {
  constructor(public readonly limit: number) {
    super(`The upload is larger than the limit of ${formatBytes(limit)}.`);
  }
}

export function formatBytes(n: number) {
  return n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(n % 1024 ** 2 ? 1 : 0)} MiB` : n >= 1024 ? `${Math.round(n / 1024)} KiB` : `${n} bytes`;
}

/**
 * Reads a request body into memory, refusing it as soon as it passes `limit` (by its
 * Content-Length before reading anything, or while streaming for chunked uploads), so an
 * oversized upload is rejected before anything is stored.
 */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) throw new BodyTooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      req.destroy();
      throw new BodyTooLarge(limit);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
