import type { WebSocket } from "ws";
import { MAX_TRPC_BATCH } from "../api/batch";
import { RateLimiter } from "../services/calc/rateLimit";

// tRPC's WebSocket (/api/trpc-ws) carries the pages' subscriptions, and nothing else: their
// queries and mutations go over HTTP, through the load gate (per-caller rate, calls in
// progress, shedding when the loop is behind). tRPC's own handler would run any query or
// mutation sent on the socket, as many as one frame holds (a stranger's 300 price estimates
// in one 40 kB frame held the loop 4.8 s). So each frame is judged before tRPC sees it.

/** Frames a second one socket may send (twice as many at once). */
const FRAMES_PER_SECOND = 10;
/** Subscriptions one socket may have started and not stopped. */
const MAX_SUBSCRIPTIONS = 32;

/** Why a frame is refused, or undefined when tRPC may have it. */
export function judgeTrpcFrame(data: string, open: Set<unknown>): string | undefined {
  if (data === "PING" || data === "PONG") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return "not JSON";
  }
  const messages = Array.isArray(parsed) ? parsed : [parsed];
  if (messages.length > MAX_TRPC_BATCH) return `more than ${MAX_TRPC_BATCH} messages in a frame`;
  for (const m of messages) {
    const { id, method } = (m ?? {}) as { id?: unknown; method?: unknown };
    if (method === "subscription.stop") open.delete(id);
    else if (method !== "subscription") return "only subscriptions are served on this socket; queries and mutations go over HTTP";
    else if (!open.has(id) && open.size >= MAX_SUBSCRIPTIONS) return `more than ${MAX_SUBSCRIPTIONS} subscriptions on one socket`;
    else open.add(id);
  }
  return undefined;
}

/**
 * Puts the judge in front of tRPC's handler on this socket: call it on "connection" before
 * tRPC's listener is added. A refused frame never reaches tRPC; the socket is closed with 1008
 * (policy violation) and the reason.
 */
export function guardTrpcSocket(ws: WebSocket): void {
  const rate = new RateLimiter(FRAMES_PER_SECOND, 2 * FRAMES_PER_SECOND);
  const open = new Set<unknown>();
  const emit = ws.emit.bind(ws);
  // ws hands every frame to `emit("message", …)`; tRPC listens there with no way to vet a frame first.
  ws.emit = ((event: string | symbol, ...args: unknown[]) => {
    if (event !== "message") return emit(event, ...args);
    const [raw, isBinary] = args as [Buffer, boolean];
    const reason = !rate.take("socket")
      ? "too many frames; slow down"
      : isBinary
        ? "binary frames are not served"
        : judgeTrpcFrame(raw.toString("utf8"), open);
    if (reason === undefined) return emit(event, ...args);
    if (ws.readyState === ws.OPEN) ws.close(1008, reason);
    return false;
  }) as typeof ws.emit;
}
