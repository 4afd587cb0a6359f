import type { IncomingMessage } from "node:http";

export class BodyTooLarge extends Error {
  constructor(public readonly limit: number) {
    super(`The upload is larger than the limit of ${formatBytes(limit)}.`);
  }
}

/** The client went away (or the connection broke) before the whole body arrived. */
export class BodyInterrupted extends Error {
  constructor() {
    super("The upload was interrupted before it was complete.");
  }
}

/** How long a connection whose body went over the limit stays open for the answer. */
const LINGER_MS = 1000;

export function formatBytes(n: number) {
  return n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(n % 1024 ** 2 ? 1 : 0)} MiB` : n >= 1024 ? `${Math.round(n / 1024)} KiB` : `${n} bytes`;
}

/**
 * Reads a request body into memory, refusing it as soon as it passes `limit` (by its
 * Content-Length before reading anything, or while streaming for chunked uploads), so an
 * oversized upload is rejected before anything is stored. Past the limit it stops reading
 * but leaves the connection open a moment, so the caller's 413 reaches the client (with
 * `connection: close` the socket closes once it is sent); then the connection is dropped, as
 * the rest of the body will never be read.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new BodyTooLarge(limit));
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (e?: Error) => {
      req.off("data", onData).off("end", onEnd).off("error", onError).off("close", onClose);
      if (e) reject(e);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      req.pause();
      chunks.length = 0;
      setTimeout(() => req.destroy(), LINGER_MS).unref();
      done(new BodyTooLarge(limit));
    };
    const onEnd = () => done();
    const onError = () => done(new BodyInterrupted());
    const onClose = () => done(new BodyInterrupted());
    req.on("data", onData).on("end", onEnd).on("error", onError).on("close", onClose);
  });
}
