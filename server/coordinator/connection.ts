import type { WebSocket } from "ws";
import type { ServerMessage } from "../../worker/protocol/messages";
import { corkForTurn } from "./cork";

/** One volunteer socket after a successful hello. */
export interface VolunteerConn {
  /** Scheduler key: one per socket, so two tabs of one volunteer never share leases. */
  key: string;
  volunteerId: string;
  accountId: string;
  userId: string | null;
  agent: "browser" | "node";
  threads: number;
  connectedAt: number;
  /** Millicredits earned on this socket (acknowledged). */
  earned: number;
  tasksDone: number;
  /** Host speed vs the reference machine (clamped): its CPU-ms × this = reference CPU-ms. */
  benchmark: number;
  ws: WebSocket;
  /** The ringer (known-answer task) this socket holds, if any. */
  ringer?: string;
  /** Results acknowledged on this socket since it connected or last let a lease lapse: its window grows with them (windowOf). */
  proven: number;
  /** What it was last told of its results that wait for a copy nobody online may compute. */
  toldWaiting?: number;
}

/**
 * A socket whose unsent output has grown past this is not reading (a stalled tab, a hostile
 * client): it is cut off rather than buffered for without bound, and its leases are re-queued.
 */
export const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

export function send(ws: WebSocket, msg: ServerMessage) {
  if (ws.readyState !== ws.OPEN) return;
  if (ws.bufferedAmount > MAX_BUFFERED_BYTES) {
    // terminate, not close: a close frame would only queue behind what it does not read.
    ws.terminate();
    return;
  }
  // Frames to one socket within an event-loop turn leave in one write (see cork.ts).
  corkForTurn(ws);
  ws.send(JSON.stringify(msg));
}

/** Prefetch window: two tasks per thread keeps every worker busy across a round trip. */
export const windowFor = (threads: number) => threads * 2;

/**
 * A socket's first window, whatever threads it claims: 32 tasks (16 threads' worth), one more
 * for each result it returns (it doubles every round trip, as TCP's slow start does), up to
 * two a thread. Two sockets that said 256 threads and never answered held 166 of a job's 200
 * copies, leased again to them as their leases lapsed; a lapse takes a socket back to this
 * window.
 */
export const FIRST_WINDOW = 32;

/** The volunteer's window, less the place its ringer holds. */
export function windowOf(conn: VolunteerConn): number {
  return Math.max(0, Math.min(windowFor(conn.threads), FIRST_WINDOW + conn.proven) - (conn.ringer ? 1 : 0));
}
