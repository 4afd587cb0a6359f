import fs from "node:fs/promises";
import os from "node:os";
import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import type { Db } from "../store/prisma";

/** The machine and the server process, as read at one sample. */
export interface SystemReading {
  /** Server process CPU (user + system) since the previous reading, % of one core. */
  cpuPercent: number;
  load1: number;
  rssBytes: number;
  heapUsedBytes: number;
  heapTotalBytes: number;
  /** Event-loop delay since the previous reading, 99th percentile. */
  eventLoopLagMs: number;
  /**
   * Space available to this (unprivileged) process where DATA_DIR lives: blobs and uploads, and
   * with the default DATABASE_URL the SQLite file. A PostgreSQL database's disk is its server's,
   * not watched from here.
   */
  diskFreeBytes: number;
  diskTotalBytes: number;
  /** Whether `SELECT 1` answered. */
  dbOk: boolean;
}

const DB_CHECK_TIMEOUT_MS = 2000;

/** Reads CPU, memory, event-loop delay, disk and database health; one per sampler. */
export class SystemProbe {
  private readonly loop: IntervalHistogram;
  private cpu = process.cpuUsage();
  private wall = process.hrtime.bigint();
  private disk = { free: 0, total: 0 };
  private diskError: string | undefined;

  constructor(private readonly opts: { dataDir: string; db: Pick<Db, "$queryRawUnsafe">; log?: (m: string) => void }) {
    this.loop = monitorEventLoopDelay({ resolution: 10 });
    this.loop.enable();
  }

  async read(): Promise<SystemReading> {
    const [dbOk] = await Promise.all([this.checkDb(), this.readDisk()]);
    const wall = process.hrtime.bigint();
    const cpu = process.cpuUsage();
    const cpuUs = cpu.user - this.cpu.user + (cpu.system - this.cpu.system);
    const wallUs = Number(wall - this.wall) / 1000;
    this.cpu = cpu;
    this.wall = wall;
    const mem = process.memoryUsage();
    // Nanoseconds; 0 (or absurd) before the histogram has seen a single tick.
    const lag = this.loop.count > 0 ? this.loop.percentile(99) / 1e6 : 0;
    this.loop.reset();
    return {
      cpuPercent: wallUs > 0 ? (100 * cpuUs) / wallUs : 0,
      load1: os.loadavg()[0],
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      heapTotalBytes: mem.heapTotal,
      eventLoopLagMs: Number.isFinite(lag) ? lag : 0,
      diskFreeBytes: this.disk.free,
      diskTotalBytes: this.disk.total,
      dbOk,
    };
  }

  stop() {
    this.loop.disable();
  }

  private async checkDb(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.opts.db.$queryRawUnsafe("SELECT 1"),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${DB_CHECK_TIMEOUT_MS} ms`)), DB_CHECK_TIMEOUT_MS);
        }),
      ]);
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Keeps the last good reading if statfs fails (logged once per distinct error). */
  private async readDisk() {
    try {
      const s = await fs.statfs(this.opts.dataDir);
      this.disk = { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
      this.diskError = undefined;
    } catch (e) {
      const msg = (e as Error).message;
      if (msg !== this.diskError) this.opts.log?.(`[monitoring] cannot read disk space of ${this.opts.dataDir}: ${msg}`);
      this.diskError = msg;
    }
  }
}
