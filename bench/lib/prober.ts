import { apiClient } from "../../cli/client";

// What an operator and the admin page see while the server is under load: every `everyMs`,
// GET /api/health and the admin dashboard's own query (monitoring.history, the last hour), on
// a fixed schedule whatever the answers take; no good answer within the timeout is a failure.

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

export class Prober {
  readonly points: ProbePoint[] = [];
  readonly failures: ProbeFailure[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly admin: ReturnType<typeof apiClient>;

  constructor(
    private readonly url: string,
    adminApiKey: string,
    private readonly t0: number,
    private readonly everyMs = 250,
    /** As long as `tabgrid watch` waits by default before it calls the server down. */
    private readonly timeoutMs = 10_000,
  ) {
    this.admin = apiClient({ url, apiKey: adminApiKey });
  }

  start() {
    const tick = () => {
      const p = this.probe().finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
      this.timer = setTimeout(tick, this.everyMs);
    };
    tick();
    return this;
  }

  async stop() {
    clearTimeout(this.timer);
    await Promise.all(this.inFlight);
  }

  /** Points sent in [fromS, toS) seconds since t0. */
  between(fromS: number, toS = Infinity) {
    return this.points.filter((p) => p.t >= fromS && p.t < toS);
  }

  private async probe() {
    const sent = performance.now();
    const t = (sent - this.t0) / 1000;
    const timed = async (what: ProbeFailure["what"], call: (signal: AbortSignal) => Promise<void>) => {
      try {
        await call(AbortSignal.timeout(this.timeoutMs));
        return performance.now() - sent;
      } catch (e) {
        this.failures.push({ t, what, error: (e as Error).message || String(e) });
        return null;
      }
    };
    const [healthMs, adminMs] = await Promise.all([
      timed("health", async (signal) => {
        const res = await fetch(`${this.url}/api/health`, { signal });
        const body = (await res.json()) as { status?: string };
        if (!res.ok || body.status !== "ok") throw new Error(`/api/health answered ${res.status} ${JSON.stringify(body)}`);
      }),
      timed("admin", async (signal) => {
        const h = await this.admin.monitoring.history.query({ minutes: 60 }, { signal });
        if (!Array.isArray(h.samples)) throw new Error("monitoring.history answered without samples");
      }),
    ]);
    this.points.push({ t, healthMs, adminMs });
  }
}
