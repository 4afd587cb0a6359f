import type { ServerResponse } from "node:http";
import type { Db } from "../store/prisma";
import { dbKind } from "../store/prisma";
import type { Cluster } from "../cluster/cluster";
import type { BlobStore } from "../store/blobs";
import { version } from "../monitoring/version";

const started = Date.now();

/**
 * Liveness plus this node's view of what it depends on: a database round trip (200 when it
 * answers, 503 otherwise) and, in cluster mode, a Redis ping. Without Redis a node still serves
 * its own volunteers, so a failing Redis makes it "degraded", not down; so does a blob store
 * that does not answer (uploads and program jobs fail, built-in kernels go on; its answer is
 * cached for a few seconds, so frequent probes cost the store nothing). The answer says only
 * "error" for a part that fails (it is public); the log gets the reason.
 */
export async function health(db: Db, cluster: Cluster, blobs: Pick<BlobStore, "kind" | "check">, res: ServerResponse, log: (m: string) => void = console.error) {
  const engine = safely(() => dbKind(db));
  let ok = true;
  try {
    await db.$queryRawUnsafe("SELECT 1");
  } catch (e) {
    ok = false;
    log(`health: the database did not answer: ${(e as Error)?.message ?? String(e)}`);
  }
  const [redis, blobsAnswer] = await Promise.all([cluster.redisHealth(), blobs.check()]);
  if (redis !== null && redis !== "ok") log(`health: Redis did not answer: ${redis}`);
  if (blobsAnswer !== "ok") log(`health: the blob store did not answer: ${blobsAnswer}`);
  const status = !ok ? "error" : (redis !== null && redis !== "ok") || blobsAnswer !== "ok" ? "degraded" : "ok";
  res.writeHead(ok ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify({
    status, version, node: cluster.nodeId, mode: cluster.mode,
    database: ok ? "ok" : "error", databaseEngine: engine,
    ...(redis !== null ? { redis: redis === "ok" ? "ok" : "error" } : {}),
    blobs: blobsAnswer === "ok" ? "ok" : "error", blobStore: blobs.kind,
    uptimeSeconds: Math.round((Date.now() - started) / 1000),
  }));
}

function safely<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}
