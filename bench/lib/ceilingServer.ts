import http from "node:http";
import crypto from "node:crypto";
import { WebSocketServer, type WebSocket } from "ws";
import { PROTOCOL_VERSION, VOLUNTEER_WS_PATH, type ClientMessage, type ServerMessage, type WireTask } from "../../worker/protocol/messages";

// The bare-transport ceiling: a `ws` server speaking the volunteer protocol with the same
// framing (JSON text frames, the same window of two tasks a thread, an ack per results frame
// followed by as many fresh tasks) and nothing else: no scheduler, no database, no checks.
// What the bench's fleet moves through it is what the transport and the load generator allow
// on this machine; the coordinator's dispatch is reported as a share of it.
// Run as its own process (`node --import tsx bench/lib/ceilingServer.ts`), like the server:
// it prints `listening PORT` when it is up.

const jobId = `ceiling${crypto.randomBytes(9).toString("hex")}`;
let next = 0;

/** A task shaped like the coordinator's for a pi unit of the bench's jobs. */
function task(): WireTask {
  const n = next++;
  return {
    taskId: `${jobId.slice(0, 12)}${n.toString(36).padStart(13, "0")}:0`, jobId, kernel: "pi",
    params: { samples: 10_000_000 }, input: { seed: n * 2654435761 % 4294967296, samples: 1000 },
    deadline: Date.now() + 300_000,
  };
}

interface Conn {
  window: number;
  out: number;
}

const send = (ws: WebSocket, m: ServerMessage) => ws.send(JSON.stringify(m));

function topUp(ws: WebSocket, c: Conn) {
  const n = c.window - c.out;
  if (n <= 0) return;
  const tasks = Array.from({ length: n }, task);
  c.out += n;
  send(ws, { type: "tasks", tasks });
}

const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
wss.on("connection", (ws: WebSocket) => {
  const c: Conn = { window: 0, out: 0 };
  ws.on("message", (data) => {
    const msg = JSON.parse(String(data)) as ClientMessage;
    if (msg.type === "hello") {
      c.window = msg.threads * 2;
      send(ws, { type: "welcome", protocol: PROTOCOL_VERSION, volunteerId: msg.volunteerId, account: "ceiling", signedIn: false, window: c.window });
      topUp(ws, c);
    } else if (msg.type === "capacity") {
      c.window = msg.threads * 2;
      topUp(ws, c);
    } else if (msg.type === "results") {
      c.out = Math.max(0, c.out - msg.results.length);
      send(ws, { type: "ack", accepted: msg.results.map((r) => r.taskId), rejected: [] });
      topUp(ws, c);
    }
  });
});

const server = http.createServer((_req, res) => res.writeHead(404).end());
server.on("upgrade", (req, socket, head) => {
  if ((req.url ?? "").split("?")[0] !== VOLUNTEER_WS_PATH) return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
});
server.listen(0, "127.0.0.1", () => {
  const addr = server.address();
  process.stdout.write(`listening ${typeof addr === "object" && addr ? addr.port : 0}\n`);
});
process.on("SIGTERM", () => process.exit(0));
