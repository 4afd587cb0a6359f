import type { Env } from "../env";
import type { Db } from "../store/prisma";
import type { BlobStore } from "../store/blobs";
import type { Coordinator } from "../coordinator/coordinator";
import type { Monitoring } from "../monitoring/monitoring";

/** What services need from the running server; tests build one with a real database. */
export interface AppDeps {
  db: Db;
  env: Env;
  blobs: BlobStore;
  coordinator: Coordinator;
  /** Dashboard samples (`sampler.history()`, `latest()`, "sample" events) and the Prometheus registry. */
  monitoring: Monitoring;
}
