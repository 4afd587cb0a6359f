import fs from "node:fs";
import { fetchMetrics, metricValue } from "./prom";

// Watches the server process from outside: CPU and RSS from /proc (Linux), event-loop delay
// from the server's own /api/metrics (prom-client resets its event-loop histogram at every
// scrape, so each sample covers the time since the previous one).

export interface ProcessSample {
  /** Seconds since the sampler started. */
  t: number;
  /** CPU used since the previous sample, % of one core. */
  cpuPercent: number;
  rssMb: number;
  lagP99Ms: number;
  lagMaxMs: number;
  /** This (load generator) process's CPU over the same interval, % of one core. */
  clientCpuPercent: number;
}

export interface PhaseUsage {
  cpuPercentMean: number;
  cpuPercentMax: number;
  rssMbMax: number;
  rssMbEnd: number;
  lagP99MsMax: number;
  lagMaxMs: number;
  clientCpuPercentMean: number;
}

const TICKS = 100; // USER_HZ on Linux

export function readCpuSeconds(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which may itself hold spaces and parentheses.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / TICKS;
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds used so far by the database server's processes (every process named
 * `postgres` on this machine: the server under test's backends, and whatever else uses that
 * PostgreSQL meanwhile). SQLite works inside the Tabgrid process, PostgreSQL outside it: a
 * fair CPU-per-task figure adds this.
 */
export function postgresCpuSeconds(): number {
  let total = 0;
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/comm`, "utf8").trim() !== "postgres") continue;
    } catch {
      continue;
    }
    total += readCpuSeconds(Number(entry)) ?? 0;
  }
  return total;
}

export function readRssMb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function readLag(url: string): Promise<{ p99: number; max: number }> {
  const text = await fetchMetrics(url, 2000).catch(() => "");
  const get = (name: string) => metricValue(text, name, NaN) * 1000;
  return { p99: get("nodejs_eventloop_lag_p99_seconds"), max: get("nodejs_eventloop_lag_max_seconds") };
}

export class ProcessSampler {
  readonly samples: ProcessSample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly started = performance.now();
  private lastCpu: number;
  private lastAt = performance.now();
  private lastClient = process.cpuUsage();

  constructor(private readonly pid: number, private readonly url: string, private readonly everyMs = 500) {
    this.lastCpu = readCpuSeconds(pid) ?? 0;
  }

  start() {
    const tick = async () => {
      const lag = await readLag(this.url);
      const cpu = readCpuSeconds(this.pid);
      const now = performance.now();
      const client = process.cpuUsage();
      const clientUs = client.user - this.lastClient.user + client.system - this.lastClient.system;
      this.lastClient = client;
      if (cpu !== undefined) {
        this.samples.push({
          clientCpuPercent: (100 * clientUs / 1e6) / ((now - this.lastAt) / 1000),
          t: (now - this.started) / 1000,
          cpuPercent: (100 * (cpu - this.lastCpu)) / ((now - this.lastAt) / 1000),
          rssMb: readRssMb(this.pid) ?? NaN,
          lagP99Ms: lag.p99,
          lagMaxMs: lag.max,
        });
        this.lastCpu = cpu;
        this.lastAt = now;
      }
      this.timer = setTimeout(tick, this.everyMs);
    };
    this.timer = setTimeout(tick, this.everyMs);
    return this;
  }

  stop() {
    clearTimeout(this.timer);
  }

  /** Marks where a phase starts (an index into samples). */
  mark(): number {
    return this.samples.length;
  }

  usage(from: number, to = this.samples.length): PhaseUsage {
    const s = this.samples.slice(from, to);
    const num = (xs: number[]) => xs.filter((x) => Number.isFinite(x));
    const max = (xs: number[]) => (num(xs).length ? Math.max(...num(xs)) : NaN);
    const cpu = num(s.map((x) => x.cpuPercent));
    const client = num(s.map((x) => x.clientCpuPercent));
    return {
      cpuPercentMean: cpu.length ? cpu.reduce((a, b) => a + b, 0) / cpu.length : NaN,
      cpuPercentMax: max(cpu),
      rssMbMax: max(s.map((x) => x.rssMb)),
      rssMbEnd: s.at(-1)?.rssMb ?? readRssMb(this.pid) ?? NaN,
      lagP99MsMax: max(s.map((x) => x.lagP99Ms)),
      lagMaxMs: max(s.map((x) => x.lagMaxMs)),
      clientCpuPercentMean: client.length ? client.reduce((a, b) => a + b, 0) / client.length : NaN,
    };
  }
}
