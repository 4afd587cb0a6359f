import type { IncomingMessage } from "node:http";

export class BodyTooLarge extends Error {
  constructor(public readonly limit: number, what = "upload") {
    super(`The ${what} is larger than the limit of ${formatBytes(limit)}.`);
  }
}

/** The client went away (or the connection broke) before the whole body arrived. */
export class BodyInterrupted extends Error {
  constructor() {
    super("The upload was interrupted before it was complete.");
  }
}

/** The server could not hold more of the body in memory now (other uploads hold it). */
export class BodyBusy extends Error {
  constructor() {
    super("The server is receiving other uploads; try again in a few seconds.");
  }
}

/** The body came slower than `minRate` allows. */
export class BodyTooSlow extends Error {
  constructor(bytesPerSecond: number, what = "upload") {
    super(`The ${what} came slower than ${formatBytes(bytesPerSecond)} a second; send it again on a better connection.`);
  }
}

export interface ReadBodyOptions {
  /** Called before each chunk is kept, with its size: false refuses the body (BodyBusy). */
  take?: (bytes: number) => boolean;
  /** Bytes a second the body must arrive at, measured over each window of `RATE_WINDOW_MS` (BodyTooSlow). */
  minRate?: number;
  /** What the body is, in the errors' messages (default "upload"). */
  what?: string;
}

/** The window over which an upload's rate is measured. */
const RATE_WINDOW_MS = 10_000;

/** How long a connection whose body went over the limit stays open for the answer. */
const LINGER_MS = 1000;

export function formatBytes(n: number) {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(n % 1024 ** 3 ? 1 : 0)} GiB`;
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
export function readBody(req: IncomingMessage, limit: number, opts: ReadBodyOptions = {}): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new BodyTooLarge(limit, opts.what));
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let windowStart = 0;
    // A body trickled a byte at a time held its place (and the memory reserved for it) until
    // Node's request timeout, 5 minutes.
    const pace = opts.minRate
      ? setInterval(() => {
        if (size - windowStart < (opts.minRate! * RATE_WINDOW_MS) / 1000) refuse(new BodyTooSlow(opts.minRate!, opts.what));
        windowStart = size;
      }, RATE_WINDOW_MS).unref()
      : undefined;
    const done = (e?: Error) => {
      clearInterval(pace);
      req.off("data", onData).off("end", onEnd).off("error", onError).off("close", onClose);
      if (e) reject(e);
      else resolve(Buffer.concat(chunks, size));
    };
    // Stops reading; the connection stays open a moment for the caller's answer, then drops.
    const refuse = (e: Error) => {
      req.pause();
      chunks.length = 0;
      setTimeout(() => req.destroy(), LINGER_MS).unref();
      done(e);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return refuse(new BodyTooLarge(limit, opts.what));
      if (opts.take && !opts.take(chunk.length)) return refuse(new BodyBusy());
      chunks.push(chunk);
    };
    const onEnd = () => done();
    const onError = () => done(new BodyInterrupted());
    const onClose = () => done(new BodyInterrupted());
    req.on("data", onData).on("end", onEnd).on("error", onError).on("close", onClose);
  });
}
