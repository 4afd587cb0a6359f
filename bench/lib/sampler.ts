import fs from "node:fs";
import { fetchMetrics, metricValue } from "./prom";

// Watches the server process (or every node of a cluster) from outside: CPU and RSS from
// /proc (Linux), event-loop delay from the server's own /api/metrics (prom-client resets its
// event-loop histogram at every scrape, so each sample covers the time since the previous one).

export interface ProcessSample {
  /** Seconds since the sampler started. */
  t: number;
  /** CPU used since the previous sample, % of one core (every node's, summed, in a cluster). */
  cpuPercent: number;
  /** The database server's CPU over the same interval, % of one core (NaN: not measured). */
  dbCpuPercent: number;
  rssMb: number;
  lagP99Ms: number;
  lagMaxMs: number;
  /** This (load generator) process's CPU over the same interval, % of one core. */
  clientCpuPercent: number;
}

export interface PhaseUsage {
  cpuPercentMean: number;
  cpuPercentMax: number;
  /** The database server's (PostgreSQL's; NaN with SQLite, which is inside the server). */
  dbCpuPercentMean: number;
  rssMbMax: number;
  rssMbEnd: number;
  lagP99MsMax: number;
  lagMaxMs: number;
  clientCpuPercentMean: number;
}

const TICKS = 100; // USER_HZ on Linux

/**
 * Connections the kernel dropped because a listening socket's accept queue was full
 * (TcpExt ListenOverflows, machine-wide; undefined off Linux). A dropped SYN is sent again
 * 1 s later, then 3 s: a probe that meets a full queue takes seconds however fast the server's
 * loop is.
 */
export function readListenOverflows(): number | undefined {
  try {
    const lines = fs.readFileSync("/proc/net/netstat", "utf8").split("\n").filter((l) => l.startsWith("TcpExt:"));
    const names = lines[0]!.split(/\s+/);
    const values = lines[1]!.split(/\s+/);
    const i = names.indexOf("ListenOverflows");
    return i > 0 ? Number(values[i]) : undefined;
  } catch {
    return undefined;
  }
}

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
 * CPU seconds used so far by the database server's processes: every process named
 * `postgres` on this machine (the postmaster, its writers and checkpointer, autovacuum),
 * except client backends of databases other than `database` when it is given (other users of
 * the same PostgreSQL, such as tests running meanwhile). SQLite works inside the Tabgrid
 * process, PostgreSQL outside it: a fair CPU-per-task figure adds this.
 */
export function postgresCpuSeconds(database?: string): number {
  let total = 0;
  for (const pid of postgresPids(database)) total += readCpuSeconds(pid) ?? 0;
  return total;
}

/** A client backend's title: `postgres: [cluster: ]user database host(port) state`. */
const BACKEND_TITLE = /^postgres: (?:\S+: )?\S+ (\S+) (?:[0-9a-fA-F.:]+\(\d+\)|\[local\])/;

export function postgresPids(database?: string): number[] {
  return pidsNamed("postgres").filter((pid) => {
    if (!database) return true;
    try {
      const title = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
      const m = BACKEND_TITLE.exec(title);
      return !m || m[1] === database;
    } catch {
      return false;
    }
  });
}

/** Processes whose command name (`/proc/<pid>/comm`) is `name`. */
export function pidsNamed(name: string): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/comm`, "utf8").trim() === name) out.push(Number(entry));
    } catch {
      continue;
    }
  }
  return out;
}

/**
 * CPU seconds used by a changing set of processes since the first reading, process by
 * process: one that ends between two readings takes only what it used since the last one with
 * it (a plain sum of totals would drop all of it), and one that appears counts from its start.
 */
export class CpuMeter {
  private readonly last = new Map<number, number>();
  private total = 0;
  private primed = false;

  constructor(private readonly pids: () => number[]) {}

  read(): number {
    const seen = new Set<number>();
    for (const pid of this.pids()) {
      const cpu = readCpuSeconds(pid);
      if (cpu === undefined) continue;
      seen.add(pid);
      const prev = this.last.get(pid);
      if (prev !== undefined) this.total += Math.max(0, cpu - prev);
      else if (this.primed) this.total += cpu;
      this.last.set(pid, cpu);
    }
    for (const pid of this.last.keys()) if (!seen.has(pid)) this.last.delete(pid);
    this.primed = true;
    return this.total;
  }
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
  private lastDb: number;
  private lastAt = performance.now();
  private lastClient = process.cpuUsage();
  private readonly pids: number[];
  private readonly urls: string[];
  private readonly cpu: CpuMeter;
  private ticks = 0;

  /**
   * Watches one server process, or the nodes of a cluster: their CPU summed, the largest RSS
   * of any of them, and each one's event-loop delay in turn. `db`, if given, is the database's CPU, sampled too.
   */
  constructor(pid: number | number[], url: string | string[], private readonly everyMs = 500, private readonly db?: CpuMeter) {
    this.pids = ([] as number[]).concat(pid);
    this.urls = ([] as string[]).concat(url);
    this.cpu = new CpuMeter(() => this.pids);
    this.lastCpu = this.cpu.read();
    this.lastDb = db?.read() ?? 0;
  }

  start() {
    const tick = async () => {
      // One node's /api/metrics per tick, in turn: a scrape costs the server a few ms of CPU, so
      // measuring costs the same with any number of nodes. Each node's reading covers the time
      // since its previous one.
      const lag = await readLag(this.urls[this.ticks++ % this.urls.length]);
      const alive = this.pids.some((pid) => readCpuSeconds(pid) !== undefined);
      const cpu = this.cpu.read();
      const db = this.db?.read();
      const now = performance.now();
      const client = process.cpuUsage();
      const clientUs = client.user - this.lastClient.user + client.system - this.lastClient.system;
      this.lastClient = client;
      if (alive) {
        const seconds = (now - this.lastAt) / 1000;
        const rss = this.pids.map((pid) => readRssMb(pid)).filter((x): x is number => x !== undefined);
        this.samples.push({
          clientCpuPercent: (100 * clientUs / 1e6) / seconds,
          t: (now - this.started) / 1000,
          cpuPercent: (100 * (cpu - this.lastCpu)) / seconds,
          dbCpuPercent: db === undefined ? NaN : (100 * (db - this.lastDb)) / seconds,
          rssMb: rss.length ? Math.max(...rss) : NaN,
          lagP99Ms: lag.p99,
          lagMaxMs: lag.max,
        });
        this.lastCpu = cpu;
        this.lastDb = db ?? 0;
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
    const mean = (xs: number[]) => (num(xs).length ? num(xs).reduce((a, b) => a + b, 0) / num(xs).length : NaN);
    const cpu = num(s.map((x) => x.cpuPercent));
    return {
      cpuPercentMean: mean(cpu),
      cpuPercentMax: max(cpu),
      dbCpuPercentMean: mean(s.map((x) => x.dbCpuPercent)),
      rssMbMax: max(s.map((x) => x.rssMb)),
      rssMbEnd: s.at(-1)?.rssMb ?? maxOf(this.pids.map((pid) => readRssMb(pid) ?? NaN)),
      lagP99MsMax: max(s.map((x) => x.lagP99Ms)),
      lagMaxMs: max(s.map((x) => x.lagMaxMs)),
      clientCpuPercentMean: mean(s.map((x) => x.clientCpuPercent)),
    };
  }
}

/** The largest finite number of `xs`, NaN if none. */
function maxOf(xs: number[]): number {
  const ok = xs.filter((x) => Number.isFinite(x));
  return ok.length ? Math.max(...ok) : NaN;
}
