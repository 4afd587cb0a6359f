import crypto from "node:crypto";
import WebSocket from "ws";
import { getKernel } from "../../worker/kernels";
import { answerInteractive } from "../../worker/interactive/volunteer";
import { PROTOCOL_VERSION, VOLUNTEER_WS_PATH, type ServerMessage, type TaskResult, type WireTask } from "../../worker/protocol/messages";

// Headless volunteers for the benchmark: many in one process, each with its own real
// WebSocket, speaking the volunteer protocol with as little client-side work as possible so
// the figures measure the server. Outputs are the real kernel's (tiny units), so they pass
// the server's validation. A "timed" task is held for its nominal duration with a timer:
// a 2-core machine cannot run 1,000 volunteers' CPU, but the coordinator's view is the same.

export type ExecMode =
  /** Run each task as soon as it arrives; all of a frame's results travel in one frame. */
  | { kind: "greedy" }
  /** Each thread runs one task at a time for `ms` of wall time. */
  | { kind: "timed"; ms: number }
  /**
   * Open model: the volunteer wants a task every `periodMs` (first at a random phase). Each
   * such slot is a scheduled start time; a task that is not there yet starts when it comes,
   * and its overhead is still counted from the slot (no coordinated omission).
   */
  | { kind: "paced"; periodMs: number };

export interface FleetStats {
  connected: number;
  received: number;
  acked: number;
  rejected: number;
  errors: string[];
  /** Overheads (ms) of paced tasks: durable ack minus scheduled start. */
  overheadsMs: number[];
  /** The scheduled start (performance.now) of each of overheadsMs, in the same order. */
  overheadSlots: number[];
  /** Time of each ack frame's arrival (ms, performance.now) and how many results it accepted. */
  ackTimes: Array<[number, number]>;
  /** Results accepted by each server the fleet is spread over (one entry per URL, in order). */
  ackedByNode: number[];
  /** Timed: each wait (ms) of a thread with nothing buffered, from its previous task's end (or the run's start) to the next task's arrival. */
  gapsMs: number[];
}

interface Slot {
  at: number;
}

class SimVolunteer {
  ws!: WebSocket;
  buffer: Array<WireTask & { arrivedAt?: number }> = [];
  /** Timed: when each idle thread's last task ended on paper. */
  freeAt: number[] = [];
  /** Timed: tasks started since the fleet's last run(). */
  ran = 0;
  busy = 0;
  outbox: TaskResult[] = [];
  flushQueued = false;
  /** Paced: the start time of each task run, by task id, until acked. */
  started = new Map<string, number>();
  waiting: Slot[] = [];
  nextSlot = 0;
  closed = false;

  constructor(
    readonly fleet: Fleet,
    readonly id: string,
    readonly token: string,
    public threads: number,
    /** Which of the fleet's URLs it is connected to. */
    readonly node: number,
  ) {}

  connect(url: string, paused: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${url.replace(/^http/, "ws")}${VOLUNTEER_WS_PATH}`, { perMessageDeflate: false });
      this.ws = ws;
      const timer = setTimeout(() => reject(new Error(`volunteer ${this.id}: no welcome within 60 s`)), 60_000);
      ws.on("open", () => {
        ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, volunteerId: this.id, token: this.token, threads: paused ? 0 : this.threads, agent: "node", benchmark: 1 }));
      });
      ws.on("message", (data) => {
        const msg = JSON.parse(String(data)) as ServerMessage;
        if (msg.type === "welcome") {
          clearTimeout(timer);
          resolve();
        } else this.handle(msg);
      });
      ws.on("error", (e) => {
        clearTimeout(timer);
        this.fleet.stats.errors.push(e.message);
        reject(e);
      });
      ws.on("close", () => {
        this.closed = true;
        clearTimeout(timer);
      });
    });
  }

  /** New capacity; tasks still buffered from the previous run are answered (after it, so none come back). */
  setThreads(n: number) {
    this.threads = n;
    // Each thread is free from now: a wait for the first task counts as a gap.
    const now = performance.now();
    this.freeAt = Array.from({ length: n }, () => now);
    this.waiting = [];
    this.started.clear();
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({ type: "capacity", threads: n }));
    if (this.buffer.length) this.ws.send(JSON.stringify({ type: "results", results: this.buffer.map(compute) }));
    this.buffer = [];
  }

  handle(msg: ServerMessage) {
    const stats = this.fleet.stats;
    if (msg.type === "tasks") {
      stats.received += msg.tasks.length;
      this.fleet.totalReceived += msg.tasks.length;
      const mode = this.fleet.mode;
      if (mode.kind === "greedy") {
        for (const t of msg.tasks) this.outbox.push(compute(t));
        this.flush();
      } else {
        const arrivedAt = performance.now();
        for (const t of msg.tasks) this.buffer.push({ ...t, arrivedAt });
        if (mode.kind === "timed") this.startTimed(mode.ms);
        else this.serveWaiting();
      }
    } else if (msg.type === "ack") {
      const now = performance.now();
      stats.acked += msg.accepted.length;
      stats.ackedByNode[this.node] += msg.accepted.length;
      stats.rejected += msg.rejected.length;
      stats.ackTimes.push([now, msg.accepted.length]);
      if (this.started.size) {
        for (const id of msg.accepted) {
          const at = this.started.get(id);
          if (at === undefined) continue;
          this.started.delete(id);
          stats.overheadsMs.push(now - at);
          stats.overheadSlots.push(at);
        }
      }
    } else if (msg.type === "interactive") {
      this.ws.send(JSON.stringify(answerInteractive(msg).reply));
    } else if (msg.type === "revoke") {
      const gone = new Set(msg.taskIds);
      this.buffer = this.buffer.filter((t) => !gone.has(t.taskId));
    } else if (msg.type === "error") {
      stats.errors.push(`${msg.code}: ${msg.message}`);
    }
  }

  /**
   * Each thread runs one task at a time for `ms`. A task starts when its thread's previous
   * task ended on paper (or when it arrived, if later), not when this process got round to
   * that task's timer: a real worker thread goes on computing while its page is busy, so the
   * load generator's own event-loop delays do not pile up into the measured time.
   */
  startTimed(ms: number) {
    const now = performance.now();
    while (this.busy < this.threads && this.buffer.length) {
      const t = this.buffer.shift()!;
      this.busy++;
      const free = this.freeAt.shift() ?? now;
      const arrived = t.arrivedAt ?? now;
      if (arrived > free) this.fleet.stats.gapsMs.push(arrived - free);
      this.ran++;
      const end = Math.max(free, arrived) + ms;
      setTimeout(() => {
        this.busy--;
        this.freeAt.push(end);
        this.queue(compute(t));
        this.startTimed(ms);
      }, Math.max(0, end - performance.now()));
    }
  }

  /** Paced: one slot is due now; it takes a buffered task or waits for the next to arrive. */
  slot(at: number) {
    this.waiting.push({ at });
    this.serveWaiting();
  }

  serveWaiting() {
    while (this.waiting.length && this.buffer.length) {
      const slot = this.waiting.shift()!;
      const t = this.buffer.shift()!;
      this.started.set(t.taskId, slot.at);
      this.queue(compute(t));
    }
  }

  queue(r: TaskResult) {
    this.outbox.push(r);
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  flush() {
    this.flushQueued = false;
    if (!this.outbox.length || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({ type: "results", results: this.outbox }));
    this.outbox = [];
  }
}

function compute(t: WireTask): TaskResult {
  const kernel = getKernel(t.kernel);
  if (!kernel) return { taskId: t.taskId, error: `no kernel ${t.kernel}` };
  return { taskId: t.taskId, output: kernel.run(t.params, t.input), ms: 0 };
}

export class Fleet {
  readonly volunteers: SimVolunteer[] = [];
  stats: FleetStats = Fleet.emptyStats();
  mode: ExecMode = { kind: "greedy" };
  /** Tasks received since the fleet was made, over every run. */
  totalReceived = 0;
  private pacer: NodeJS.Timeout | undefined;

  private readonly urls: string[];

  static emptyStats(nodes = 1): FleetStats {
    return { connected: 0, received: 0, acked: 0, rejected: 0, errors: [], overheadsMs: [], overheadSlots: [], ackTimes: [], ackedByNode: new Array<number>(nodes).fill(0), gapsMs: [] };
  }

  /**
   * The volunteers of one server, or of the nodes of a cluster: with several URLs they are
   * spread round-robin (the first on the first URL, the second on the second, …), so the first
   * `n` volunteers of any run are spread as evenly as they can be.
   */
  constructor(url: string | string[]) {
    this.urls = ([] as string[]).concat(url);
    if (!this.urls.length) throw new Error("a fleet needs a server URL");
    this.stats = Fleet.emptyStats(this.urls.length);
  }

  /** Opens `n` more volunteer sockets (at most `parallel` handshakes at a time), paused or not. */
  async connect(n: number, opts: { threads: number; paused?: boolean; parallel?: number }) {
    const batch: SimVolunteer[] = [];
    for (let i = 0; i < n; i++) {
      const node = (this.volunteers.length + i) % this.urls.length;
      batch.push(new SimVolunteer(this, `bench-${crypto.randomBytes(6).toString("hex")}`, crypto.randomBytes(18).toString("base64url"), opts.threads, node));
    }
    const parallel = opts.parallel ?? 100;
    for (let i = 0; i < batch.length; i += parallel) {
      await Promise.all(batch.slice(i, i + parallel).map((v) => v.connect(this.urls[v.node], !!opts.paused)));
    }
    this.volunteers.push(...batch);
    this.stats.connected = this.volunteers.length;
  }

  /**
   * Resets the counters and starts the first `active` volunteers in `mode` with `threads`
   * each (the rest stay paused).
   */
  run(mode: ExecMode, opts: { active: number; threads: number }) {
    this.stopPacing();
    this.mode = mode;
    this.stats = { ...Fleet.emptyStats(this.urls.length), connected: this.volunteers.length };
    this.volunteers.forEach((v, i) => {
      v.ran = 0;
      v.setThreads(i < opts.active ? opts.threads : 0);
    });
    if (mode.kind === "paced") this.pace(mode.periodMs, this.volunteers.slice(0, opts.active));
  }

  /** Stops taking new work (capacity 0); what is held stays until revoked or the job ends. */
  pause() {
    this.stopPacing();
    for (const v of this.volunteers) v.setThreads(0);
  }

  private pace(periodMs: number, active: SimVolunteer[]) {
    const start = performance.now();
    for (const v of active) v.nextSlot = start + Math.random() * periodMs;
    const tick = () => {
      const now = performance.now();
      for (const v of active) {
        while (v.nextSlot <= now) {
          v.slot(v.nextSlot);
          v.nextSlot += periodMs;
        }
      }
      this.pacer = setTimeout(tick, 1);
    };
    tick();
  }

  /** Timed: tasks each of the first `n` volunteers started since the last run(). */
  tasksRun(n: number): number[] {
    return this.volunteers.slice(0, n).map((v) => v.ran);
  }

  /** Results acknowledged since the last run() up to `end` (performance.now), acks arriving later left out. */
  ackedUntil(end: number): number {
    return this.stats.ackTimes.filter(([t]) => t <= end).reduce((sum, [, c]) => sum + c, 0);
  }

  /**
   * Greedy for one phase: the first `active` volunteers with `threads` each for `seconds`, then
   * paused; the results acknowledged within it and their rate.
   */
  async greedyPhase(active: number, threads: number, seconds: number): Promise<{ start: number; end: number; acked: number; seconds: number; tasksPerSecond: number }> {
    this.run({ kind: "greedy" }, { active, threads });
    const start = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    this.pause();
    const end = performance.now();
    const acked = this.ackedUntil(end);
    return { start, end, acked, seconds: Math.round((end - start) / 10) / 100, tasksPerSecond: Math.round(acked / ((end - start) / 1000)) };
  }

  /** Paced: no further slots (what was started still gets its ack). */
  stopPacing() {
    clearTimeout(this.pacer);
    this.pacer = undefined;
  }

  async close() {
    this.stopPacing();
    await Promise.all(this.volunteers.map((v) => new Promise<void>((resolve) => {
      if (v.closed || v.ws.readyState === WebSocket.CLOSED) return resolve();
      v.ws.once("close", () => resolve());
      v.ws.close(1000, "benchmark over");
    })));
    this.volunteers.length = 0;
  }
}
