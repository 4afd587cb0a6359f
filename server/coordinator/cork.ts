import type { Socket } from "node:net";
import type { WebSocket } from "ws";

// Frames sent to one volunteer within one event-loop turn (tasks, then an ack and a credit
// once the commit lands) leave in a single write: one syscall and, when small, one TCP
// segment, instead of one each. The socket is uncorked at the end of the turn.

const corked = new Set<Socket>();
const beforeUncork: Array<() => void> = [];
let flushing = false;

/** Runs `fn` at the end of this turn, just before the corked sockets are written (so what it sends joins them). */
export function atEndOfTurn(fn: () => void) {
  beforeUncork.push(fn);
  schedule();
}

function schedule() {
  if (flushing) return;
  flushing = true;
  setImmediate(uncorkAll);
}

export function corkForTurn(ws: WebSocket) {
  // ws keeps the net.Socket here; without it (closed, or another implementation) send plainly.
  const socket = (ws as unknown as { _socket?: Socket })._socket;
  if (!socket || corked.has(socket) || socket.destroyed) return;
  socket.cork();
  corked.add(socket);
  schedule();
}

function uncorkAll() {
  flushing = false;
  for (const fn of beforeUncork.splice(0)) fn();
  for (const socket of corked) socket.uncork();
  corked.clear();
}
