import { Worker } from "node:worker_threads";

// What an operator and the admin page see while the server is under load: every `everyMs`,
// GET /api/health and the admin dashboard's own query (monitoring.history, the last hour), on
// a fixed schedule whatever the answers take; no good answer within the timeout is a failure.
//
// The probes run on a thread of their own: an operator's monitor does not run inside the load
// generator, and the load generator's event loop (5,000 sockets opened at once, hundreds of
// submissions a second) would otherwise delay the probes' own timers and reads and count that
// against the server.

export interface ProbePoint {
  /** Seconds since `t0` at which the probe was sent. */
  t: number;
  /** Milliseconds to a good answer; null when it failed. */
  healthMs: number | null;
  adminMs: number | null;
}

export interface ProbeFailure {
  t: number;
  what: "health" | "admin";
  error: string;
}

type FromThread = { point: ProbePoint } | { failure: ProbeFailure } | { stopped: true };

/** The thread's code: plain JavaScript with fetch, so it needs no TypeScript loader. */
const THREAD = `
const { parentPort, workerData: w } = require("node:worker_threads");
const now = () => performance.timeOrigin + performance.now();
const inFlight = new Set();
let timer;
async function probe() {
  const sent = now();
  const t = (sent - w.t0Epoch) / 1000;
  const timed = async (what, call) => {
    try {
      await call(AbortSignal.timeout(w.timeoutMs));
      return now() - sent;
    } catch (e) {
      parentPort.postMessage({ failure: { t, what, error: (e && e.message) || String(e) } });
      return null;
    }
  };
  const [healthMs, adminMs] = await Promise.all([
    timed("health", async (signal) => {
      const res = await fetch(w.url + "/api/health", { signal });
      const body = await res.json();
      if (!res.ok || body.status !== "ok") throw new Error("/api/health answered " + res.status + " " + JSON.stringify(body));
    }),
    timed("admin", async (signal) => {
      const input = encodeURIComponent(JSON.stringify({ minutes: 60 }));
      const res = await fetch(w.url + "/api/trpc/monitoring.history?input=" + input, { signal, headers: { authorization: "Bearer " + w.apiKey } });
      const body = await res.json();
      if (!res.ok) throw new Error((body && body.error && body.error.message) || "monitoring.history answered " + res.status);
      if (!Array.isArray(body.result && body.result.data && body.result.data.samples)) throw new Error("monitoring.history answered without samples");
    }),
  ]);
  parentPort.postMessage({ point: { t, healthMs, adminMs } });
}
const tick = () => {
  const p = probe().finally(() => inFlight.delete(p));
  inFlight.add(p);
  timer = setTimeout(tick, w.everyMs);
};
parentPort.on("message", async () => {
  clearTimeout(timer);
  await Promise.all(inFlight);
  parentPort.postMessage({ stopped: true });
});
tick();
`;

export class Prober {
  readonly points: ProbePoint[] = [];
  readonly failures: ProbeFailure[] = [];
  private worker: Worker | undefined;
  private stopped: Promise<void> | undefined;

  constructor(
    private readonly url: string,
    private readonly adminApiKey: string,
    /** performance.now() of the run's start: points are in seconds since it. */
    private readonly t0: number,
    private readonly everyMs = 250,
    /** As long as `tabgrid watch` waits by default before it calls the server down. */
    private readonly timeoutMs = 10_000,
  ) {}

  start() {
    const w = new Worker(THREAD, {
      eval: true,
      workerData: { url: this.url, apiKey: this.adminApiKey, t0Epoch: performance.timeOrigin + this.t0, everyMs: this.everyMs, timeoutMs: this.timeoutMs },
    });
    this.stopped = new Promise((resolve, reject) => {
      w.on("message", (m: FromThread) => {
        if ("point" in m) this.points.push(m.point);
        else if ("failure" in m) this.failures.push(m.failure);
        else resolve();
      });
      w.on("error", reject);
      w.on("exit", () => resolve());
    });
    this.worker = w;
    return this;
  }

  async stop() {
    if (!this.worker) return;
    this.worker.postMessage("stop");
    await this.stopped;
    await this.worker.terminate();
    this.worker = undefined;
  }

  /** Points sent in [fromS, toS) seconds since t0. */
  between(fromS: number, toS = Infinity) {
    return this.points.filter((p) => p.t >= fromS && p.t < toS);
  }
}
