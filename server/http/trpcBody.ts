import type http from "node:http";
import { addressKey } from "../coordinator/network";
import { AddressCounts } from "./addressCounts";
import { BodyInterrupted, BodyTooLarge, BodyTooSlow, readBody } from "./body";
import { answerTrpcError, trpcProcedures } from "./loadGate";

/** tRPC bodies being received at once per network address (an IPv6 /48): see trpcBodies(). */
export const TRPC_BODIES_PER_ADDRESS = 32;

export interface TrpcBodyOptions {
  /** The largest body tRPC takes (its maxBodySize). */
  maxBytes: number;
  /** Bytes a second the body must keep coming at (UPLOAD_MIN_BYTES_PER_SECOND), measured over 10 s. */
  minRate: number;
  /** Who the request comes from (the socket's address, or the proxy's word for it). */
  ipOf: (req: http.IncomingMessage) => string;
}

/**
 * Reads a tRPC call's body before the call is counted in progress (LoadGate.admit) and hands it
 * to tRPC as `req.body`, which its adapter takes instead of reading the stream. A body trickled
 * in is refused (408) once it falls behind the minimum rate, and one address receives at most
 * TRPC_BODIES_PER_ADDRESS at once (429), so slow bodies hold neither the server's places for
 * calls nor much of its memory. Resolves true when the request was answered here.
 */
export function trpcBodies(opts: TrpcBodyOptions) {
  const receiving = new AddressCounts(TRPC_BODIES_PER_ADDRESS, addressKey);
  return async (req: http.IncomingMessage, res: http.ServerResponse, pathname: string): Promise<boolean> => {
    const procs = trpcProcedures(pathname);
    const release = receiving.admit(opts.ipOf(req));
    if (!release) {
      return answerTrpcError(req, res, procs, 429, "TOO_MANY_REQUESTS", `More than ${TRPC_BODIES_PER_ADDRESS} requests from your address are being received at once; send them faster, or fewer at a time.`, { "retry-after": "1", connection: "close" });
    }
    try {
      (req as http.IncomingMessage & { body?: string }).body = (await readBody(req, opts.maxBytes, { minRate: opts.minRate, what: "request" })).toString("utf8");
      return false;
    } catch (e) {
      if (e instanceof BodyTooLarge) return answerTrpcError(req, res, procs, 413, "PAYLOAD_TOO_LARGE", e.message, { connection: "close" });
      if (e instanceof BodyTooSlow) return answerTrpcError(req, res, procs, 408, "TIMEOUT", e.message, { connection: "close" });
      if (e instanceof BodyInterrupted) return res.destroy(), true;
      throw e;
    } finally {
      release();
    }
  };
}
