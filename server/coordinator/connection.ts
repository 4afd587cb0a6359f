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
  /** The API key it signed in with, if any: revoking the key closes the socket. */
  keyId?: string;
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
  /** It (or its id, in the last hour: Dispatcher.hasLapsed) let a lease lapse: its window starts again from LAPSED_WINDOW rather than FIRST_WINDOW. */
  lapsed?: boolean;
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
 * A socket's first window, whatever threads it claims: 8 tasks (4 threads' worth), one more
 * for each result it returns (it doubles every round trip, as TCP's slow start does), up to
 * two a thread. Two sockets that said 256 threads and never answered held 166 of a job's 200
 * copies, leased again to them as their leases lapsed; at 32, twenty fresh ids held 640.
 */
export const FIRST_WINDOW = 8;
/** The window of a socket that let a lease lapse (as TCP's after a timeout), growing the same way. */
export const LAPSED_WINDOW = 2;

/** The volunteer's window, less the place its ringer holds. */
export function windowOf(conn: VolunteerConn): number {
  const start = conn.lapsed ? LAPSED_WINDOW : FIRST_WINDOW;
  return Math.max(0, Math.min(windowFor(conn.threads), start + conn.proven) - (conn.ringer ? 1 : 0));
}
