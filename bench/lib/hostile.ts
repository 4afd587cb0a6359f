import crypto from "node:crypto";
import net from "node:net";
import WebSocket from "ws";
import { PROTOCOL_VERSION, VOLUNTEER_WS_PATH, type ServerMessage, type WireTask } from "../../worker/protocol/messages";

// Volunteer sockets that are not the well-behaved Fleet: idle ones opened by the thousand
// (with the outcome of each handshake, refusals included), and hostile ones (oversized frames,
// garbage, leases never returned, a reader that stops reading). Each records what the server
// did to it, so the stress report can say how it was treated.

const wsUrl = (url: string) => `${url.replace(/^http/, "ws")}${VOLUNTEER_WS_PATH}`;
const newIdentity = (prefix: string) => ({ volunteerId: `${prefix}-${crypto.randomBytes(6).toString("hex")}`, token: crypto.randomBytes(18).toString("base64url") });

export interface Closed {
  code: number;
  reason: string;
}

/** A raw volunteer socket that records every message and how it closed. */
export class ProbeVolunteer {
  readonly messages: ServerMessage[] = [];
  readonly identity: { volunteerId: string; token: string };
  closed: Closed | undefined;
  error: string | undefined;
  /** performance.now() at: socket opened, hello sent, welcome received. */
  openedAt: number | undefined;
  helloAt: number | undefined;
  welcomedAt: number | undefined;
  readonly startedAt = performance.now();
  readonly ws: WebSocket;
  private readonly settled: Promise<void>;

  constructor(url: string, opts: { prefix?: string; hello?: { threads: number } | false } = {}) {
    this.identity = newIdentity(opts.prefix ?? "stress");
    this.ws = new WebSocket(wsUrl(url), { perMessageDeflate: false, handshakeTimeout: 60_000 });
    this.settled = new Promise<void>((resolve) => {
      this.ws.on("open", () => {
        this.openedAt = performance.now();
        if (opts.hello !== false) this.hello(opts.hello?.threads ?? 0);
      });
      this.ws.on("message", (data) => {
        const msg = JSON.parse(String(data)) as ServerMessage;
        if (msg.type === "welcome") {
          this.welcomedAt = performance.now();
          resolve();
        }
        this.messages.push(msg);
      });
      this.ws.on("error", (e) => (this.error ??= e.message));
      this.ws.on("close", (code, reason) => {
        this.closed = { code, reason: reason.toString() };
        resolve();
      });
    });
  }

  /** Resolves once the socket is open (false if it closed or failed first). */
  async opened(timeoutMs = 10_000): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (this.openedAt === undefined && !this.closed && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    return this.openedAt !== undefined && this.ws.readyState === WebSocket.OPEN;
  }

  hello(threads: number) {
    this.helloAt = performance.now();
    this.send({ type: "hello", protocol: PROTOCOL_VERSION, ...this.identity, threads, agent: "node" });
  }

  send(msg: unknown) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(typeof msg === "string" ? msg : JSON.stringify(msg));
  }

  /** Settles once welcomed or closed (whichever comes first), or after `timeoutMs`. */
  async outcome(timeoutMs = 60_000): Promise<{ welcomed: boolean; handshakeMs: number | null; connectMs: number | null; closed: Closed | undefined; error: string | undefined }> {
    await Promise.race([this.settled, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    const welcomed = this.welcomedAt !== undefined;
    return {
      welcomed,
      handshakeMs: welcomed && this.helloAt !== undefined ? this.welcomedAt! - this.helloAt : null,
      connectMs: welcomed ? this.welcomedAt! - this.startedAt : null,
      closed: this.closed,
      error: this.error ?? (welcomed || this.closed ? undefined : `no welcome within ${timeoutMs} ms`),
    };
  }

  tasks(): WireTask[] {
    return this.messages.flatMap((m) => (m.type === "tasks" ? m.tasks : []));
  }

  count(type: ServerMessage["type"]) {
    return this.messages.filter((m) => m.type === type).length;
  }

  /** Resolves with how the socket closed, or undefined after `timeoutMs`. */
  async waitClosed(timeoutMs = 10_000): Promise<Closed | undefined> {
    const deadline = performance.now() + timeoutMs;
    while (!this.closed && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.closed;
  }

  /** Closes politely (or drops a socket still connecting) and waits for it to be gone. */
  async close() {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    const gone = new Promise<void>((r) => this.ws.once("close", () => r()));
    if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
    else this.ws.close(1000, "stress test over");
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000).unref())]);
    if (!this.closed) this.ws.terminate();
  }
}

/**
 * Opens `n` idle volunteers (hello with 0 threads), at most `parallel` handshakes in flight
 * (n: all at once), and waits for each to be welcomed or refused. With `retryOverloaded`, a
 * socket the server closed with 1013 because it was overloaded comes back after 1.5–4.5 s, as
 * the real clients do (worker/client/volunteerClient.ts), until `timeoutMs` from its first try;
 * its connect time counts from that first try.
 */
export async function openIdle(url: string, n: number, opts: { parallel?: number; prefix?: string; timeoutMs?: number; retryOverloaded?: boolean } = {}) {
  const parallel = opts.parallel ?? n;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const all: ProbeVolunteer[] = [];
  const outcomes: Array<Awaited<ReturnType<ProbeVolunteer["outcome"]>> & { retries: number }> = [];
  const one = async () => {
    const first = performance.now();
    for (let retries = 0; ; retries++) {
      const v = new ProbeVolunteer(url, { prefix: opts.prefix });
      const o = await v.outcome(Math.max(1, first + timeoutMs - performance.now()));
      const overloaded = o.closed?.code === 1013 && /overloaded/.test(o.closed.reason);
      const wait = 3000 * (0.5 + Math.random());
      if (!opts.retryOverloaded || !overloaded || performance.now() + wait > first + timeoutMs) {
        all.push(v);
        return { ...o, connectMs: o.welcomed ? v.welcomedAt! - first : null, retries };
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  };
  for (let i = 0; i < n; i += parallel) {
    outcomes.push(...(await Promise.all(Array.from({ length: Math.min(parallel, n - i) }, one))));
  }
  return { volunteers: all, outcomes };
}

export async function closeAll(volunteers: ProbeVolunteer[]) {
  await Promise.all(volunteers.map((v) => v.close()));
}

/**
 * A `results` frame naming `count` tasks that do not exist (about 110 kB for 500): the
 * server answers it with an ack rejecting each one, about as large, so a client that sends
 * these and never reads makes the server buffer for it. (Over 512 such results in one
 * frame, the frame is refused as bad and not echoed.)
 */
export function bogusResultsFrame(count = 500): string {
  return JSON.stringify({ type: "results", results: Array.from({ length: count }, (_, i) => ({ taskId: `${"x".repeat(180)}${i}`, output: 0 })) });
}

/**
 * Opens a volunteer socket by hand (plain TCP, the WebSocket handshake written out) and sends
 * only the header of a text frame announcing `length` bytes, then waits: how the server
 * answers a frame it will not take, before any of the payload is sent. Resolves with the close
 * frame's code and reason, or the socket error.
 */
export function announceFrame(url: string, length: number, timeoutMs = 10_000): Promise<Closed | { error: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname);
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const done = (r: Closed | { error: string }) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    socket.on("connect", () => {
      const key = crypto.randomBytes(16).toString("base64");
      socket.write(`GET ${VOLUNTEER_WS_PATH} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    socket.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.subarray(0, end).toString();
        if (!/^HTTP\/1\.1 101/.test(head)) return done({ error: head.split("\r\n")[0] });
        upgraded = true;
        buf = buf.subarray(end + 4);
        // FIN + text, masked, 64-bit length, then the mask key; no payload follows.
        const header = Buffer.alloc(14);
        header[0] = 0x81;
        header[1] = 0x80 | 127;
        header.writeBigUInt64BE(BigInt(length), 2);
        crypto.randomFillSync(header, 10, 4);
        socket.write(header);
      }
      // Server frames are not masked; a close frame (opcode 8) has a short payload.
      while (buf.length >= 2) {
        const opcode = buf[0] & 0x0f;
        const len = buf[1] & 0x7f;
        if (len > 125) return done({ error: "unexpected long frame from the server" });
        if (buf.length < 2 + len) return;
        const payload = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        if (opcode === 8) return done({ code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005, reason: payload.subarray(2).toString() });
      }
    });
    socket.on("error", (e) => done({ error: e.message }));
    socket.on("close", () => done({ error: "closed without a close frame" }));
  });
}
