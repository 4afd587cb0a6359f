// The volunteer tab's side of the program sandbox. Consumer programs never run in the app's
// own origin: they run in Web Workers inside a hidden <iframe sandbox="allow-scripts"> whose
// document (worker/sandbox/hostPage.ts, served by server/http/sandbox.ts) has an opaque
// origin and a CSP without any network access. This module creates that iframe (once per
// host URL), hands it the runner script, and exposes each iframe worker as a PoolWorker so
// the generic WorkerPool (time limits, replacement, throttle, pause) drives them like any
// other worker. The parent (trusted app code) fetches program code and input blobs itself
// and passes them in; nothing inside the iframe can fetch anything.
//
// React-free and DOM-only: import it from client components.

import { WorkerPool, type PoolOptions, type PoolWorker } from "../runtime/pool";
import type { TaskResult, TaskRun } from "../runtime/runTask";
import { isProgramParams } from "../sandbox/abi";
import { SANDBOX_HOST_PATH, SANDBOX_RUNNER_PATH } from "../sandbox/hostPage";
import { dedicatedProgramWorker } from "../sandbox/routingPool";
import { INPUT_PROTOCOL_ERROR, InputMirror } from "../runtime/inputCache";

export interface SandboxFrameOptions {
  /** The sandbox document (default SANDBOX_HOST_PATH on the app's server). */
  hostUrl?: string;
  /** Where the runner script is fetched from (default SANDBOX_RUNNER_PATH). */
  runnerUrl?: string;
  /** The runner's source, instead of fetching runnerUrl. */
  runnerSource?: string;
  /** Where the hidden iframe goes (default document.body). */
  container?: HTMLElement;
  /** How long the iframe may take to start (default 15 s). */
  startTimeoutMs?: number;
  /** While tasks run, the iframe is pinged this often (default 1 s)… */
  heartbeatMs?: number;
  /** …and declared dead when a ping goes unanswered this long (default 4 s). */
  crashAfterMs?: number;
}

interface FrameListener {
  message(data: unknown): void;
  error(message: string): void;
}

export const SANDBOX_CRASHED =
  "the sandbox stopped responding: its process crashed, most likely because a program exhausted its memory";

const runnerSources = new Map<string, Promise<string>>();

function fetchRunner(url: string): Promise<string> {
  let p = runnerSources.get(url);
  if (!p) {
    p = fetch(url, { credentials: "omit" }).then(async (res) => {
      if (!res.ok) throw new Error(`could not load the sandbox runner from ${url}: HTTP ${res.status}`);
      return res.text();
    });
    runnerSources.set(url, p);
    p.catch(() => runnerSources.delete(url));
  }
  return p;
}

/**
 * The hidden sandbox iframe and its relay protocol. A crash of the iframe's process (which
 * Chromium isolates from the app's: a sandboxed frame gets a process of its own) fails the
 * tasks running in it; the next spawn starts a new iframe.
 */
export class SandboxFrame {
  private iframe: HTMLIFrameElement | undefined;
  private port: MessagePort | undefined;
  private starting: Promise<void> | undefined;
  private onReady: (() => void) | undefined;
  private listeners = new Map<number, FrameListener>();
  /** Each worker's own channel to this page (hostPage.ts, "spawned"); until it arrives, messages go through the iframe. */
  private direct = new Map<number, MessagePort>();
  private nextWorker = 1;
  private gen = 0;
  private busy = 0;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private pingSentAt = 0;
  private pingOutstanding = false;
  private pingCount = 0;
  private lastBeat = 0;

  constructor(private readonly opts: SandboxFrameOptions = {}) {}

  /** Changes whenever the iframe is replaced; worker ids of an older generation are dead. */
  get generation(): number {
    return this.gen;
  }

  /** The iframe element, while there is one (tests look inside it). */
  get element(): HTMLIFrameElement | undefined {
    return this.iframe;
  }

  /** Starts the iframe if there is none; resolves once it can start workers. */
  ready(): Promise<void> {
    this.starting ??= this.start();
    return this.starting;
  }

  private start(): Promise<void> {
    const gen = ++this.gen;
    const hostUrl = this.opts.hostUrl ?? SANDBOX_HOST_PATH;
    const limit = this.opts.startTimeoutMs ?? 15_000;
    const started = (async () => {
      const runner = this.opts.runnerSource ?? (await fetchRunner(this.opts.runnerUrl ?? SANDBOX_RUNNER_PATH));
      if (this.gen !== gen) throw new Error("the sandbox was shut down while starting");
      await new Promise<void>((resolve, reject) => {
        const iframe = document.createElement("iframe");
        // allow-scripts only: no allow-same-origin, so the document's origin is opaque.
        iframe.setAttribute("sandbox", "allow-scripts");
        iframe.setAttribute("aria-hidden", "true");
        iframe.title = "Tabgrid compute sandbox";
        iframe.tabIndex = -1;
        iframe.style.display = "none";
        const timer = setTimeout(() => {
          reject(new Error(`the sandbox at ${hostUrl} did not start within ${limit / 1000} s (is it served by this server?)`));
        }, limit);
        this.onReady = () => {
          clearTimeout(timer);
          resolve();
        };
        iframe.addEventListener(
          "load",
          () => {
            if (this.gen !== gen || this.port) return;
            const channel = new MessageChannel();
            this.port = channel.port1;
            channel.port1.onmessage = (ev) => this.receive(gen, ev.data, ev.ports);
            // The frame's origin is opaque ("null"), so no target origin can name it; the
            // port, handed over once, is the private line from then on.
            iframe.contentWindow?.postMessage({ t: "connect" }, "*", [channel.port2]);
            channel.port1.postMessage({ t: "init", runner });
          },
          { once: true },
        );
        iframe.src = hostUrl;
        this.iframe = iframe;
        (this.opts.container ?? document.body).appendChild(iframe);
      });
    })();
    started.catch(() => {
      if (this.gen === gen) this.shutdown("the sandbox failed to start");
    });
    return started;
  }

  private receive(gen: number, m: unknown, ports: readonly MessagePort[] = []): void {
    if (gen !== this.gen || !m || typeof m !== "object") return;
    const msg = m as { t?: string; w?: number; d?: unknown; message?: unknown; n?: number };
    if (msg.t === "spawned" && typeof msg.w === "number" && ports[0]) {
      const w = msg.w;
      const p = ports[0];
      if (!this.listeners.has(w)) return p.close();
      p.onmessage = (ev) => {
        if (gen === this.gen) this.listeners.get(w)?.message(ev.data);
      };
      this.direct.set(w, p);
    } else if (msg.t === "ready") {
      this.onReady?.();
      this.onReady = undefined;
    } else if (msg.t === "pong") {
      if (msg.n === this.pingCount) this.pingOutstanding = false;
    } else if (msg.t === "msg" && typeof msg.w === "number") {
      this.listeners.get(msg.w)?.message(msg.d);
    } else if (msg.t === "error" && typeof msg.w === "number") {
      const l = this.listeners.get(msg.w);
      this.listeners.delete(msg.w);
      l?.error(typeof msg.message === "string" ? msg.message : "the worker failed");
    }
  }

  /** Starts a worker in the (ready) iframe; its messages go to `listener`. */
  spawn(listener: FrameListener): number {
    if (!this.port) throw new Error("the sandbox is not running");
    const id = this.nextWorker++;
    this.listeners.set(id, listener);
    this.port.postMessage({ t: "spawn", w: id });
    return id;
  }

  post(id: number, data: unknown): void {
    if (!this.port || !this.listeners.has(id)) throw new Error("that sandbox worker is gone");
    const direct = this.direct.get(id);
    if (direct) direct.postMessage(data);
    else this.port.postMessage({ t: "post", w: id, d: data });
  }

  kill(id: number): void {
    this.listeners.delete(id);
    this.direct.get(id)?.close();
    this.direct.delete(id);
    this.port?.postMessage({ t: "kill", w: id });
  }

  /** The heartbeat runs only while tasks do (an idle sandbox costs no timer wake-ups). */
  taskStarted(): void {
    if (this.busy++ === 0) {
      this.pingOutstanding = false;
      this.lastBeat = performance.now();
      this.heartbeat = setInterval(() => this.beat(), this.opts.heartbeatMs ?? 1000);
    }
  }

  taskEnded(): void {
    if (this.busy > 0 && --this.busy === 0) {
      clearInterval(this.heartbeat);
      this.heartbeat = undefined;
    }
  }

  private beat(): void {
    if (!this.port) return;
    const now = performance.now();
    const crashAfter = this.opts.crashAfterMs ?? 4000;
    // A late beat means this page itself was asleep (a frozen or heavily throttled background
    // tab): the silence is ours, not the iframe's, so ask again rather than declare it dead.
    const asleep = now - this.lastBeat > crashAfter;
    this.lastBeat = now;
    if (this.pingOutstanding && !asleep) {
      if (now - this.pingSentAt > crashAfter) this.shutdown(SANDBOX_CRASHED);
      return;
    }
    this.pingOutstanding = true;
    this.pingSentAt = now;
    this.port.postMessage({ t: "ping", n: ++this.pingCount });
  }

  /** Removes the iframe; its workers' tasks fail with `reason`. The next ready() starts a new one. */
  shutdown(reason = "the sandbox was shut down"): void {
    this.gen++;
    this.starting = undefined;
    this.onReady = undefined;
    this.port?.close();
    this.port = undefined;
    for (const p of this.direct.values()) p.close();
    this.direct.clear();
    this.iframe?.remove();
    this.iframe = undefined;
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    this.busy = 0;
    const listeners = [...this.listeners.values()];
    this.listeners.clear();
    for (const l of listeners) l.error(reason);
  }
}

const frames = new Map<string, SandboxFrame>();

/** The page's sandbox iframe for this host URL, created on first use and then shared. */
export function sharedSandboxFrame(opts: SandboxFrameOptions = {}): SandboxFrame {
  const key = opts.hostUrl ?? SANDBOX_HOST_PATH;
  let f = frames.get(key);
  if (!f) {
    f = new SandboxFrame(opts);
    frames.set(key, f);
  }
  return f;
}

function abortError(): Error {
  const e = new Error("Worker pool terminated");
  e.name = "AbortError";
  return e;
}

/**
 * One Web Worker inside the sandbox iframe, as the pool sees it. The worker is started on the
 * first run (and again if the iframe was replaced since); terminate() kills it, infinite loop
 * or not, because the iframe's own thread stays free.
 */
export function sandboxIframeWorker(frame: SandboxFrame, opts: { eager?: boolean } = {}): PoolWorker {
  // `inputs`: what the worker keeps of inputs (worker/runtime/inputCache.ts), new with each worker.
  let worker: { id: number; gen: number; inputs: InputMirror } | undefined;
  let task: { id: number; resolve(r: TaskResult): void; reject(e: unknown): void; onProgress?: (f: number) => void; missing(): void } | undefined;
  let seq = 0;
  let terminated = false;
  const settle = (fn: (t: NonNullable<typeof task>) => void) => {
    const t = task;
    if (!t) return;
    task = undefined;
    frame.taskEnded();
    fn(t);
  };
  const listener: FrameListener = {
    message(data) {
      const m = data as { type?: string; id?: unknown; fraction?: unknown; output?: unknown; ms?: unknown; message?: unknown } | null;
      if (!m || !task || m.id !== task.id) return;
      if (m.type === "progress" && typeof m.fraction === "number") task.onProgress?.(m.fraction);
      else if (m.type === "done") settle((t) => t.resolve({ output: m.output ?? null, ms: typeof m.ms === "number" ? m.ms : 0 }));
      else if (m.type === "fail") settle((t) => t.reject(new Error(typeof m.message === "string" ? m.message : "the program failed")));
      else if (m.type === "missing") task.missing();
    },
    error(message) {
      worker = undefined;
      settle((t) => t.reject(new Error(message)));
    },
  };
  /** Starts the Web Worker if this (ready) frame has none for us yet. */
  const spawn = () => {
    if (!worker || worker.gen !== frame.generation) worker = { id: frame.spawn(listener), gen: frame.generation, inputs: new InputMirror() };
  };
  // Eager: the iframe and the worker start now, not with the first task (it would wait for both).
  if (opts.eager) {
    frame.ready().then(() => {
      if (!terminated) spawn();
    }, () => undefined);
  }
  return {
    api: {
      async run(t: TaskRun, onProgress?: (fraction: number) => void): Promise<TaskResult> {
        if (terminated) throw abortError();
        if (!isProgramParams(t.params)) throw new Error("not a program task: its params need kind, hash and memoryLimitBytes");
        const params = t.params;
        await frame.ready();
        if (terminated) throw abortError();
        spawn();
        const id = ++seq;
        const w = worker!;
        // Copied, not transferred: the caller may keep (cache) the code and input bytes. An input
        // the worker holds is left out: a 1.7 MB shard crossing to the iframe's process and on to
        // its worker every round cost more than the unit.
        const req = w.inputs.request(t);
        return new Promise<TaskResult>((resolve, reject) => {
          const missing = () => {
            try {
              if (!req.missed()) throw new Error(INPUT_PROTOCOL_ERROR);
              frame.post(w.id, { type: "run", id, req: { ...params, input: t.input } });
            } catch (e) {
              settle((x) => x.reject(e));
            }
          };
          task = { id, resolve, reject, onProgress, missing };
          frame.taskStarted();
          try {
            if (req.cached) frame.post(w.id, { type: "run", id, req: { ...params, input: undefined }, inputKey: req.key, cached: true });
            else frame.post(w.id, { type: "run", id, req: { ...params, input: t.input }, inputKey: req.key });
          } catch (e) {
            settle((x) => x.reject(e));
          }
        });
      },
    },
    terminate() {
      terminated = true;
      if (worker && worker.gen === frame.generation) frame.kill(worker.id);
      worker = undefined;
      settle((t) => t.reject(abortError()));
    },
  };
}

export interface SandboxPoolOptions extends PoolOptions, SandboxFrameOptions {
  /** A frame to use instead of the page's shared one. */
  frame?: SandboxFrame;
}

/**
 * A WorkerPool of `threads` sandboxed workers for program tasks (`kernel: "program"`, params
 * as ProgramRunParams, code included). Give `run` a `timeoutMs`: on expiry the worker is
 * terminated and replaced and the task fails with "time limit of N s exceeded".
 */
export function createSandboxPool(opts: SandboxPoolOptions): WorkerPool {
  const frame = opts.frame ?? sharedSandboxFrame(opts);
  return new WorkerPool(() => dedicatedProgramWorker({ start: () => sandboxIframeWorker(frame) }), { threads: opts.threads, throttle: opts.throttle });
}
