import type { Env } from "../env";
import type { Db } from "../store/prisma";
import type { BlobStore } from "../store/blobs";
import type { Coordinator } from "../coordinator/coordinator";
import type { Monitoring } from "../monitoring/monitoring";
import type { Cluster } from "../cluster/cluster";
import type { Presence } from "../cluster/presence";
import type { InteractiveOutcome } from "../coordinator/interactive";

/** What services need from the running server; tests build one with a real database. */
export interface AppDeps {
  db: Db;
  env: Env;
  blobs: BlobStore;
  coordinator: Coordinator;
  /** Dashboard samples (`sampler.history()`, `latest()`, "sample" events) and the Prometheus registry. */
  monitoring: Monitoring;
  /** What this node shares with the other nodes of its cluster (all local when it is alone). */
  cluster: Cluster;
  /** The nodes of the cluster with their volunteers (this node alone without Redis). */
  presence: Presence;
  /** Cluster mode: interactive tasks handed to another node when this one has no volunteers. */
  elsewhere?: { calc(input: { expression: string }): Promise<InteractiveOutcome> };
}
