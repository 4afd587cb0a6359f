import type { WorkerPool, WorkerInfo } from "../runtime/pool";
import type { TaskRun } from "../runtime/runTask";
import { PROTOCOL_VERSION, type ServerMessage, type TaskResult, type WireTask } from "../protocol/messages";
import { checkJsonBounds, VOLUNTEER_OUTPUT_LIMITS } from "../protocol/jsonBounds";
import { measureBenchmark } from "./benchmark";
import { answerInteractive, appendLog, LoadReporter, type InteractiveLogEntry } from "../interactive/volunteer";

/** The bits of the WebSocket API both the browser's WebSocket and Node's `ws` provide. */
export interface SocketLike {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export interface VolunteerClientOptions {
  /** The server's volunteer socket; several (the nodes of a cluster) are tried in turn after each disconnect. */
  url: string | string[];
  volunteerId: string;
  token: string;
  threads: number;
  agent: "browser" | "node";
  name?: string;
  /** The owner chose `name` (`--name`): it replaces a name chosen on /account. */
  nameChosen?: boolean;
  connect(url: string): SocketLike;
  createPool(threads: number): WorkerPool;
  /** Reconnect after a dropped connection (not after stop()). */
  reconnect?: boolean;
  /** The server refused this volunteer for good (a ban, a revoked key, a refused hello: close 1008); it does not reconnect. */
  onRefused?: (why: string) => void;
  /** Fetches what a task needs (program code, input blobs) before it runs; default: run as sent. */
  prepare?: (task: WireTask) => Promise<TaskRun & { timeoutMs?: number }>;
  /** Fetches a blob into the cache `prepare` reads, ahead of the tasks that will need it (a "prefetch" message). */
  prefetch?: (hash: string, token?: string) => void;
  log?: (msg: string) => void;
  /** Machine-wide CPU load 0..1 (Node: load average per core); the busy share of workers if higher, or alone. */
  systemLoad?: () => number;
  /** This host's benchmark score, or how to measure it (default: measureBenchmark, once). */
  benchmark?: number | (() => number);
}

export type ConnectionState = "connecting" | "connected" | "disconnected" | "stopped";

export interface VolunteerSnapshot {
  connection: ConnectionState;
  account?: string;
  signedIn: boolean;
  /** Results the server recorded since start(). */
  tasksDone: number;
  /** Results validated by quorum, and found invalid, since start(). */
  validated: number;
  invalid: number;
  /** Millicredits paid for validated results since start(). */
  earned: number;
  /** Of its results awaiting a quorum, those no volunteer online may confirm (another account's copy is needed). */
  waiting: number;
  currentJobs: string[];
  workers: WorkerInfo[];
  lastError?: string;
  /** Interactive tasks answered (newest last, at most INTERACTIVE_LOG_LIMIT). */
  interactiveLog: InteractiveLogEntry[];
}

/**
 * Drives one volunteer: keeps a socket to the coordinator, runs the tasks it sends on a
 * worker pool, and sends results back in batches. Shared by the browser tab and the
 * headless `tabgrid volunteer`, so both speak exactly the same protocol.
 */
export class VolunteerClient {
  private ws: SocketLike | undefined;
  private pool: WorkerPool | undefined;
  private stopped = true;
  private paused = false;
  private threads: number;
  private revoked = new Set<string>();
  private running = new Map<string, string>(); // taskId → jobId
  private outbox: TaskResult[] = [];
  private flushQueued = false;
  /** The largest frame the server reads (its welcome says; 4 MiB before it does, the server's default). */
  private maxFrame = DEFAULT_MAX_FRAME;
  private retry = 0;
  private benchmark: number | undefined;
  private listeners = new Set<(s: VolunteerSnapshot) => void>();
  private snap: VolunteerSnapshot = {
    connection: "stopped", signedIn: false, tasksDone: 0, validated: 0, invalid: 0, earned: 0, waiting: 0, currentJobs: [], workers: [], interactiveLog: [],
  };
  private readonly loads = new LoadReporter({
    measure: () => this.measureLoad(),
    send: (m) => this.ws?.readyState === 1 && this.ws.send(JSON.stringify(m)),
  });

  constructor(private readonly opts: VolunteerClientOptions) {
    this.threads = opts.threads;
  }

  snapshot(): VolunteerSnapshot {
    return this.snap;
  }

  subscribe(cb: (s: VolunteerSnapshot) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.pool = this.opts.createPool(this.threads);
    if (this.paused) this.pool.pause();
    this.pool.onChange(() => {
      this.update({});
      this.loads.changed();
    });
    this.snap = { ...this.snap, tasksDone: 0, validated: 0, invalid: 0, earned: 0, waiting: 0, lastError: undefined };
    this.open();
  }

  /** Stops at once: workers are terminated mid-task and the socket closes (leases return to the queue). */
  stop() {
    this.stopped = true;
    this.loads.stop();
    this.outbox = [];
    this.running.clear();
    this.pool?.terminate();
    this.pool = undefined;
    this.ws?.close(1000, "volunteer stopped");
    this.ws = undefined;
    this.update({ connection: "stopped", currentJobs: [], workers: [] });
  }

  setThreads(n: number) {
    this.threads = n;
    this.pool?.setThreads(n);
    this.sendCapacity();
  }

  setThrottle(share: number) {
    this.pool?.setThrottle(share);
  }

  /** Paused volunteers finish what runs and take nothing new (hidden tab, battery). */
  setPaused(paused: boolean) {
    if (paused === this.paused) return;
    this.paused = paused;
    if (paused) this.pool?.pause();
    else this.pool?.resume();
    this.sendCapacity();
  }

  /** Which of the servers to connect to now (the next one after each disconnect). */
  private urlTurn = 0;

  currentUrl(): string {
    const urls = Array.isArray(this.opts.url) ? this.opts.url : [this.opts.url];
    return urls[this.urlTurn % urls.length];
  }

  /** Measured on the first connection only: a reconnect should not stall on it. */
  private benchmarkScore(): number {
    const b = this.opts.benchmark;
    return (this.benchmark ??= typeof b === "number" ? b : (b ?? measureBenchmark)());
  }

  private sendCapacity() {
    if (this.ws?.readyState === 1) this.ws.send(JSON.stringify({ type: "capacity", threads: this.paused ? 0 : this.threads }));
  }

  private open() {
    this.update({ connection: "connecting" });
    const ws = this.opts.connect(this.currentUrl());
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({
        type: "hello", protocol: PROTOCOL_VERSION, volunteerId: this.opts.volunteerId, token: this.opts.token,
        threads: this.paused ? 0 : this.threads, agent: this.opts.agent, name: this.opts.name,
        ...(this.opts.nameChosen ? { nameChosen: true } : {}),
        benchmark: this.benchmarkScore(),
      }));
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      let msg: ServerMessage;
      try {
        msg = JSON.parse(String(ev.data)) as ServerMessage;
      } catch {
        return;
      }
      this.handle(msg);
    };
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.loads.stop();
      // Whatever runs now was leased on that socket; the server has already re-queued it,
      // and finish() drops results of tasks no longer in `running`.
      this.running.clear();
      this.revoked.clear();
      this.outbox = [];
      if (this.stopped) return;
      const reason = ev.reason || `connection closed (${ev.code})`;
      // A refusal (1008) follows an error message that says more than the close reason.
      const keep = ev.code === 1000 || (ev.code === 1008 && this.snap.lastError);
      this.update({ connection: "disconnected", currentJobs: [], lastError: keep ? this.snap.lastError : reason });
      if (this.opts.reconnect === false || ev.code === 1008) {
        this.opts.log?.(`disconnected: ${reason}`);
        if (ev.code === 1008) this.opts.onRefused?.(keep ? this.snap.lastError ?? reason : reason);
        return;
      }
      // Jittered, so a crowd cut off at once (a restart, a full server: 1013) does not come
      // back in lockstep; a full server is given a few seconds at least.
      // The next node of a cluster, if there are several: this one may be the one that went down.
      this.urlTurn++;
      const base = Math.min(30_000, 500 * 2 ** this.retry++);
      const delay = Math.round(Math.max(ev.code === 1013 ? 3000 : 0, base) * (0.5 + Math.random()));
      this.opts.log?.(`disconnected (${reason}); reconnecting in ${delay} ms`);
      setTimeout(() => !this.stopped && !this.ws && this.open(), delay);
    };
  }

  private handle(msg: ServerMessage) {
    switch (msg.type) {
      case "welcome":
        this.retry = 0;
        this.maxFrame = msg.maxMessageBytes ?? DEFAULT_MAX_FRAME;
        this.opts.log?.(`connected as ${msg.volunteerId} (${msg.signedIn ? "signed in" : "anonymous"}), window ${msg.window}`);
        this.update({ connection: "connected", account: msg.account, signedIn: msg.signedIn, lastError: undefined });
        this.loads.start();
        break;
      case "interactive": {
        // Trivial, trusted code: answered here and now, never queued behind the pool's tasks.
        const { reply, entry } = answerInteractive(msg);
        if (this.ws?.readyState === 1) this.ws.send(JSON.stringify(reply));
        this.opts.log?.(entry.line);
        this.update({ interactiveLog: appendLog(this.snap.interactiveLog, entry) });
        break;
      }
      case "tasks":
        for (const t of msg.tasks) this.runTask(t);
        this.update({ currentJobs: [...new Set(this.running.values())] });
        break;
      case "ack":
        this.update({ tasksDone: this.snap.tasksDone + msg.accepted.length });
        break;
      case "credit":
        this.update({
          validated: this.snap.validated + msg.valid.length,
          invalid: this.snap.invalid + msg.invalid.length,
          earned: this.snap.earned + msg.credits,
        });
        break;
      case "waiting":
        this.update({ waiting: msg.results });
        break;
      case "prefetch":
        // Hints only: a few hashes at a time, anything else is ignored.
        if (Array.isArray(msg.blobs)) {
          msg.blobs.slice(0, 16).forEach((hash, i) => {
            const token = Array.isArray(msg.tokens) && typeof msg.tokens[i] === "string" ? msg.tokens[i] : undefined;
            if (typeof hash === "string" && /^[0-9a-f]{64}$/.test(hash)) this.opts.prefetch?.(hash, token);
          });
        }
        break;
      case "revoke":
        for (const id of msg.taskIds) this.revoked.add(id);
        break;
      case "error":
        this.opts.log?.(`server: ${msg.code}: ${msg.message}`);
        this.update({ lastError: msg.message });
        break;
    }
  }

  private runTask(t: WireTask) {
    const pool = this.pool;
    if (!pool) return;
    this.running.set(t.taskId, t.jobId);
    const prepared = this.opts.prepare ? this.opts.prepare(t) : Promise.resolve({ kernel: t.kernel, params: t.params, input: t.input });
    prepared.then(({ timeoutMs, ...run }: TaskRun & { timeoutMs?: number }) => pool.run(run, `${t.kernel} · ${t.jobId.slice(0, 8)}`, { timeoutMs })).then(
      (r) => this.finish(t.taskId, { taskId: t.taskId, output: r.output, ms: r.ms }),
      (e: Error) => {
        if (e?.name === "AbortError") return;
        this.finish(t.taskId, { taskId: t.taskId, error: String(e?.message ?? e).slice(0, 2000) });
      },
    );
  }

  private finish(taskId: string, result: TaskResult) {
    const wasRunning = this.running.delete(taskId);
    if (this.revoked.delete(taskId) || !wasRunning) return;
    // An output the server would refuse (too deep, too big) is reported as this task's error
    // here: serialising it could throw and take the whole frame of results with it.
    const why = "output" in result ? checkJsonBounds(result.output, VOLUNTEER_OUTPUT_LIMITS) : null;
    this.outbox.push(why ? { taskId: result.taskId, error: `output ${why}` } : result);
    // Results finishing in the same turn travel in one frame. A microtask, not a timer:
    // browsers throttle timers in background tabs to once a second or less.
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => this.flush());
    }
    if (this.running.size === 0) this.update({ currentJobs: [] });
  }

  private flush() {
    this.flushQueued = false;
    if (!this.outbox.length || this.ws?.readyState !== 1) return;
    for (const frame of resultFrames(this.outbox, this.maxFrame)) this.ws.send(frame);
    this.outbox = [];
  }

  private measureLoad() {
    const workers = this.pool?.states() ?? [];
    const busy = workers.length ? workers.filter((w) => w.state === "busy").length / workers.length : 0;
    return { cpu: Math.max(busy, this.opts.systemLoad?.() ?? 0), inFlight: this.running.size };
  }

  private update(patch: Partial<VolunteerSnapshot>) {
    this.snap = { ...this.snap, ...patch, workers: this.pool?.states() ?? [] };
    for (const cb of this.listeners) cb(this.snap);
  }
}

const DEFAULT_MAX_FRAME = 4 * 1024 * 1024;
const FRAME_HEAD = '{"type":"results","results":[';
const FRAME_TAIL = "]}";
const encoder = new TextEncoder();
/** UTF-8 bytes of a string: its length when it is ASCII (nearly always: JSON of numbers), else counted. */
const utf8Bytes = (s: string) => (/[^\x00-\x7f]/.test(s) ? encoder.encode(s).length : s.length);

const size = (n: number) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${Math.ceil(n / 1024)} KiB`);

/**
 * Results as frames of at most `max` bytes. A frame over the server's limit closes the socket
 * (1009) and its results are computed again, by this volunteer too: a few outputs of 3 MB in one
 * frame did that forever. An output too large for any frame is sent as its task's error.
 */
export function resultFrames(results: TaskResult[], max: number): string[] {
  const frames: string[] = [];
  const room = max - FRAME_HEAD.length - FRAME_TAIL.length;
  let parts: string[] = [];
  let used = 0;
  for (const r of results) {
    let text = JSON.stringify(r);
    let bytes = utf8Bytes(text);
    if (bytes > room) {
      text = JSON.stringify({ taskId: r.taskId, error: `output is ${size(bytes)} as JSON, more than the ${size(max)} a frame to this server may carry` });
      bytes = utf8Bytes(text);
    }
    if (parts.length && used + 1 + bytes > room) {
      frames.push(FRAME_HEAD + parts.join(",") + FRAME_TAIL);
      parts = [];
      used = 0;
    }
    used += bytes + (parts.length ? 1 : 0);
    parts.push(text);
  }
  if (parts.length) frames.push(FRAME_HEAD + parts.join(",") + FRAME_TAIL);
  return frames;
}
