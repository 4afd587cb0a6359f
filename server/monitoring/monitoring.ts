import type { Registry } from "prom-client";
import type { Env } from "../env";
import type { Db } from "../store/prisma";
import { IntervalCounters } from "./counters";
import { fanOut } from "./fanOut";
import { PromMetrics } from "./metrics";
import type { CoordinatorObserver } from "./observer";
import { MonitoringSampler, type ClusterSource, type SamplerOptions } from "./sampler";

/** What the rest of the server (tRPC routers, /api/metrics) reads: `deps.monitoring`. */
export interface Monitoring {
  /** Dashboard samples: `history(sinceMs?)`, `latest()`, the "sample" event. */
  sampler: MonitoringSampler;
  /** Prometheus exposition: `await registry.metrics()`, `registry.contentType`. */
  registry: Registry;
}

/** Sampler settings that tests shorten (a minute of 300 ms, their own clock). */
export type MonitoringOptions = Partial<Pick<SamplerOptions, "intervalMs" | "minuteMs" | "bufferMs" | "retentionMs" | "pruneEveryMs" | "now" | "system" | "node">>;

/**
 * Two steps because of a cycle: the coordinator needs the observer when it is built, and the
 * sampler reads the coordinator's status. `observer` counts both for the dashboard's
 * intervals and for Prometheus; `start(coordinator)` loads the history and starts sampling.
 */
export function createMonitoring(opts: { db: Db; env: Pick<Env, "DATA_DIR" | "METRICS_INTERVAL_SECONDS">; log?: (m: string) => void } & MonitoringOptions) {
  const { db, env, log, ...overrides } = opts;
  const counters = new IntervalCounters();
  const prom = new PromMetrics();
  const observer: CoordinatorObserver = fanOut(counters, prom);
  return {
    observer,
    async start(cluster: ClusterSource): Promise<Monitoring> {
      const sampler = new MonitoringSampler({
        db, cluster, counters, dataDir: env.DATA_DIR, intervalMs: env.METRICS_INTERVAL_SECONDS * 1000, log, ...overrides,
      });
      prom.collectFrom({ cluster, latest: () => sampler.latest(), dataDir: env.DATA_DIR });
      await sampler.start();
      return { sampler, registry: prom.registry };
    },
  };
}
