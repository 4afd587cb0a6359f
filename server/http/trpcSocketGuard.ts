import net from "node:net";
import type { WebSocket } from "ws";
import { ipv6Prefix } from "../coordinator/network";
import { MAX_TRPC_BATCH } from "../api/batch";
import { RateLimiter } from "../services/calc/rateLimit";
import { AddressCounts } from "./addressCounts";

// tRPC's WebSocket (/api/trpc-ws) carries the pages' subscriptions, and nothing else: their
// queries and mutations go over HTTP, through the load gate (per-caller rate, calls in
// progress, shedding when the loop is behind). tRPC's own handler would run any query or
// mutation sent on the socket, as many as one frame holds (a stranger's 300 price estimates
// in one 40 kB frame held the loop 4.8 s). So each frame is judged before tRPC sees it.

/** Frames a second one socket may send (twice as many at once). */
const FRAMES_PER_SECOND = 10;
/** Subscriptions one socket may have started and not stopped. */
const MAX_SUBSCRIPTIONS = 32;
/** Sockets open at once from one address (an IPv4 address, an IPv6 /64). */
export const MAX_TRPC_SOCKETS_PER_ADDRESS = 32;
/** Subscriptions open at once on the whole server (each holds ~10 KB and sends a first snapshot). */
export const MAX_TRPC_SUBSCRIPTIONS = 16_384;

/**
 * What all the sockets may hold together: 5,000 sockets of 32 subscriptions from one client,
 * no sign-in needed, took RSS to 1.6 GiB and health to 80 s. Sockets are counted per address
 * at the upgrade, subscriptions server-wide as they start.
 */
export class TrpcSocketBudget {
  private readonly sockets = new AddressCounts(MAX_TRPC_SOCKETS_PER_ADDRESS, addressKey);
  subscriptions = 0;

  /** Takes a socket for this address: the release to call when it closes, or undefined if the address has its fill. */
  admit(address: string): (() => void) | undefined {
    return this.sockets.admit(address);
  }
}

/** An IPv6 address's /64 (one host usually holds a whole one), an IPv4 address as it is. */
function addressKey(address: string): string {
  return net.isIPv6(address) && !address.startsWith("::ffff:") ? ipv6Prefix(address, 4) : address;
}

/** Why a frame is refused, or undefined when tRPC may have it. */
export function judgeTrpcFrame(data: string, open: Set<unknown>, budget?: TrpcSocketBudget): string | undefined {
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
    if (method === "subscription.stop") {
      if (open.delete(id) && budget) budget.subscriptions--;
    } else if (method !== "subscription") return "only subscriptions are served on this socket; queries and mutations go over HTTP";
    else if (open.has(id)) continue;
    else if (open.size >= MAX_SUBSCRIPTIONS) return `more than ${MAX_SUBSCRIPTIONS} subscriptions on one socket`;
    else if (budget && budget.subscriptions >= MAX_TRPC_SUBSCRIPTIONS) return "the server has all the subscriptions it can hold; try again later";
    else {
      open.add(id);
      if (budget) budget.subscriptions++;
    }
  }
  return undefined;
}

/**
 * Puts the judge in front of tRPC's handler on this socket: call it on "connection" before
 * tRPC's listener is added. A refused frame never reaches tRPC; the socket is closed with 1008
 * (policy violation) and the reason.
 */
export function guardTrpcSocket(ws: WebSocket, budget?: TrpcSocketBudget): void {
  const rate = new RateLimiter(FRAMES_PER_SECOND, 2 * FRAMES_PER_SECOND);
  const open = new Set<unknown>();
  // Its subscriptions end with it.
  if (budget) ws.once("close", () => (budget.subscriptions -= open.size));
  const emit = ws.emit.bind(ws);
  // ws hands every frame to `emit("message", …)`; tRPC listens there with no way to vet a frame first.
  ws.emit = ((event: string | symbol, ...args: unknown[]) => {
    if (event !== "message") return emit(event, ...args);
    const [raw, isBinary] = args as [Buffer, boolean];
    const reason = !rate.take("socket")
      ? "too many frames; slow down"
      : isBinary
        ? "binary frames are not served"
        : judgeTrpcFrame(raw.toString("utf8"), open, budget);
    if (reason === undefined) return emit(event, ...args);
    if (ws.readyState === ws.OPEN) ws.close(1008, reason);
    return false;
  }) as typeof ws.emit;
}
