import type { WebSocket } from "ws";
import { addressKey } from "../coordinator/network";
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
/** Subscriptions one socket may have asked for that the server has not ended. */
export const MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET = 32;
/** Sockets open at once from one address (addressKey: an IPv4 address, an IPv6 /48). */
export const MAX_TRPC_SOCKETS_PER_ADDRESS = 32;
/**
 * Subscriptions open at once from one address: 18 addresses of 32 sockets of 32 held all of
 * the server's, and every other page was refused.
 */
export const MAX_TRPC_SUBSCRIPTIONS_PER_ADDRESS = 256;
/** Subscriptions open at once on the whole server (each holds ~10 KB and sends a first snapshot). */
export const MAX_TRPC_SUBSCRIPTIONS = 16_384;

/** A subscription's place in the budget: giving it back, once, whoever calls it. */
type Release = () => void;

/**
 * What all the sockets may hold together: 5,000 sockets of 32 subscriptions from one client,
 * no sign-in needed, took RSS to 1.6 GiB and health to 80 s. Sockets are counted per address
 * at the upgrade, subscriptions per address and server-wide from when they are asked for
 * until the server ends them or the socket closes.
 */
export class TrpcSocketBudget {
  private readonly sockets = new AddressCounts(MAX_TRPC_SOCKETS_PER_ADDRESS, addressKey);
  private readonly perAddress = new AddressCounts(MAX_TRPC_SUBSCRIPTIONS_PER_ADDRESS, addressKey);
  subscriptions = 0;
  /** The address admit() last let in: handleUpgrade hands its socket to guardTrpcSocket() right after, synchronously. */
  private arriving: string | undefined;

  /** Takes a socket for this address: the release to call when it closes, or undefined if the address has its fill. */
  admit(address: string): (() => void) | undefined {
    const release = this.sockets.admit(address);
    this.arriving = release && address;
    return release;
  }

  /** The address of the socket just admitted, once. */
  arrived(): string | undefined {
    const address = this.arriving;
    this.arriving = undefined;
    return address;
  }

  /** Takes a subscription for this address: its release, or why there is no room. */
  take(address: string): Release | string {
    if (this.subscriptions >= MAX_TRPC_SUBSCRIPTIONS) return "the server has all the subscriptions it can hold; try again later";
    const release = this.perAddress.admit(address);
    if (!release) return `more than ${MAX_TRPC_SUBSCRIPTIONS_PER_ADDRESS} subscriptions from your network address; close some and try again`;
    this.subscriptions++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
      this.subscriptions--;
    };
  }
}

/**
 * The head of tRPC's answer to a call: `{"id":…,` (`"jsonrpc":"2.0",` when the call had it),
 * then its result or error. A string id with escapes, or longer than legitimate ones, is not
 * read: its subscription keeps its place until its socket closes.
 */
const ANSWER_HEAD = /^\{"id":(null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|"[^"\\]{0,128}"),(?:"jsonrpc":"2\.0",)?"(result|error)":/;
/** How tRPC ends a result of `{"type":"stopped"}`; a data frame ends inside its data, with more braces. */
const STOPPED_TAIL = '"result":{"type":"stopped"}}';

/**
 * The id of the subscription a frame the server sends ends, if it ends one: tRPC (v11) answers
 * `{id, result: {type: "stopped"}}` when a subscription completes or is stopped, and
 * `{id, error}` when it fails, before it starts (not signed in, no such job) or after (the
 * error, then "stopped"). Read from the frame's head and tail: data frames are not parsed again.
 */
export function endedSubscription(frame: string): { id: unknown } | undefined {
  const head = ANSWER_HEAD.exec(frame);
  if (!head || (head[2] === "result" && !frame.endsWith(STOPPED_TAIL))) return undefined;
  return { id: JSON.parse(head[1]!) };
}

/**
 * Why a frame is refused, or undefined when tRPC may have it. `open` holds the socket's
 * subscriptions by id, each with its place in the budget, until the server ends it.
 */
export function judgeTrpcFrame(data: string, open: Map<unknown, Release>, budget?: TrpcSocketBudget, address = "unknown"): string | undefined {
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
    // A stop gives nothing back by itself: tRPC ignores one for a subscription it has not
    // started yet (one asked for in the same frame), which then runs on. Its "stopped" does.
    if (method === "subscription.stop") continue;
    if (method !== "subscription") return "only subscriptions are served on this socket; queries and mutations go over HTTP";
    // tRPC answers the second with an error under the same id: it would give back the first's place.
    if (open.has(id)) return "a subscription with this id is already open";
    if (open.size >= MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET) return `more than ${MAX_TRPC_SUBSCRIPTIONS_PER_SOCKET} subscriptions on one socket`;
    const place = budget ? budget.take(address) : () => {};
    if (typeof place === "string") return place;
    open.set(id, place);
  }
  return undefined;
}

/** Gives back the place of the subscription with this id, if it holds one. */
function end(open: Map<unknown, Release>, id: unknown): void {
  open.get(id)?.();
  open.delete(id);
}

/**
 * Puts the judge in front of tRPC's handler on this socket: call it on "connection" before
 * tRPC's listener is added. A refused frame never reaches tRPC; the socket is closed with 1008
 * (policy violation) and the reason. `address` is whom its subscriptions count against: by
 * default the one budget.admit() let in for it.
 */
export function guardTrpcSocket(ws: WebSocket, budget?: TrpcSocketBudget, address = budget?.arrived() ?? "unknown"): void {
  const rate = new RateLimiter(FRAMES_PER_SECOND, 2 * FRAMES_PER_SECOND);
  const open = new Map<unknown, Release>();
  // Its subscriptions end with it; tRPC's "stopped" answers to them, sent after, find none.
  ws.once("close", () => {
    for (const id of [...open.keys()]) end(open, id);
  });
  // A subscription the server ends gives its place back: otherwise a client's ended ones
  // (32 anonymous jobs.watch a socket, each refused at once) held places that cost it nothing.
  const send = ws.send.bind(ws);
  ws.send = ((data: unknown, ...rest: unknown[]) => {
    const ended = typeof data === "string" ? endedSubscription(data) : undefined;
    if (ended) end(open, ended.id);
    return (send as (...args: unknown[]) => void)(data, ...rest);
  }) as typeof ws.send;
  const emit = ws.emit.bind(ws);
  // ws hands every frame to `emit("message", …)`; tRPC listens there with no way to vet a frame first.
  ws.emit = ((event: string | symbol, ...args: unknown[]) => {
    if (event !== "message") return emit(event, ...args);
    const [raw, isBinary] = args as [Buffer, boolean];
    const reason = !rate.take("socket")
      ? "too many frames; slow down"
      : isBinary
        ? "binary frames are not served"
        : judgeTrpcFrame(raw.toString("utf8"), open, budget, address);
    if (reason === undefined) return emit(event, ...args);
    if (ws.readyState === ws.OPEN) ws.close(1008, reason);
    return false;
  }) as typeof ws.emit;
}
