import crypto from "node:crypto";
import type { Db } from "../../server/store/prisma";
import { createUser } from "../../server/services/users/users";
import { createApiKey } from "../../server/auth/apiKeys";
import { MILLI } from "../../server/services/credits/accounts";
import { trpc } from "./clients";
import { freePort, startServerProcess, type ServerProcess } from "./serverProcess";
import { startCliVolunteer, waitFor, type CliVolunteer } from "./server";
import type { TestDatabase } from "./testDb";

const REDIS = process.env.REDIS_TEST_URL ?? "redis://127.0.0.1:6379";

/** Two coordinators as processes of their own on one PostgreSQL and one Redis, with two CLI volunteers of two threads each preferring each node. */
export interface ClusterPair {
  a: ServerProcess;
  b: ServerProcess;
  volunteers: CliVolunteer[];
  /** A consumer's API key, with a million credits. */
  apiKey: string;
  stop(): Promise<void>;
}

export async function startClusterPair(pg: TestDatabase, db: Db, leaseSeconds: number): Promise<ClusterPair> {
  const consumer = await createUser(db, { email: `consumer-${crypto.randomBytes(3).toString("hex")}@example.com`, password: "correct horse battery" }, 1_000_000 * MILLI);
  const { key: apiKey } = await createApiKey(db, consumer.id, "cluster test");
  const prefix = `tabgrid-pair-${crypto.randomBytes(4).toString("hex")}:`;
  const [portA, portB] = [await freePort(), await freePort()];
  const env = (id: string) => ({
    REDIS_URL: REDIS, REDIS_PREFIX: prefix, NODE_ID: id, SLICE_LEASE_SECONDS: String(leaseSeconds), SPOT_CHECKS: "off", TABGRID_ALERTS: "off",
  });
  // One blob directory for both, as shared storage would be.
  const [a, b] = await Promise.all([
    startServerProcess({ port: portA, databaseUrl: pg.databaseUrl, dataDir: pg.dir, env: env("node-a") }),
    startServerProcess({ port: portB, databaseUrl: pg.databaseUrl, dataDir: pg.dir, env: env("node-b") }),
  ]);
  const volunteers = ([[0, `${a.url},${b.url}`], [1, `${a.url},${b.url}`], [2, `${b.url},${a.url}`], [3, `${b.url},${a.url}`]] as const)
    .map(([i, urls]) => startCliVolunteer(urls, 2, { name: `cluster-${i}`, dir: pg.dir }));
  return {
    a, b, volunteers, apiKey,
    async stop() {
      await Promise.all(volunteers.map((v) => v.stop()));
      await a.stop();
      await b.stop();
    },
  };
}

/**
 * A pi job of `chunks` units (~10 ms each), two copies of each unit from two hosts: half the
 * job is still seconds of work once half its units are done.
 */
export async function submitPiJob(url: string, apiKey: string, chunks: number): Promise<string> {
  const { id } = await trpc(url, apiKey).jobs.submit.mutate({
    kernel: "pi", chunks, params: { samples: chunks * 2_000_000, seed: 7 }, replication: { replicas: 2, quorum: 2, adaptive: false },
  });
  return id;
}

/** Waits for the job to end; if it does not, the message says how far it got (a stall reads differently from a slow machine). */
export async function waitForJobEnd(db: Db, jobId: string, timeoutMs: number, since = Date.now()): Promise<void> {
  let progress = "";
  await waitFor(async () => {
    const j = await db.job.findUniqueOrThrow({ where: { id: jobId } });
    progress = `${j.unitsDone} of ${j.chunks} units done ${Math.round((Date.now() - since) / 1000)} s in`;
    return j.state !== "running";
  }, timeoutMs, "the job to end", 100).catch((e: Error) => {
    throw new Error(`${e.message} (${progress})`);
  });
}

/** What a failed wait shows: the job's slices, what each node's metrics say of its sockets and queue, and the end of its log. */
export async function describeCluster(db: Db, jobId: string, nodes: ServerProcess[]): Promise<string> {
  const slices = await db.slice.findMany({ where: { jobId }, select: { id: true, owner: true, epoch: true, done: true, leaseUntil: true }, orderBy: { first: "asc" } });
  const out = [`slices: ${JSON.stringify(slices.map((s) => [s.id.split(":").slice(1).join(":"), s.owner, s.epoch, s.done, s.leaseUntil?.toISOString() ?? null]))}`];
  for (const n of nodes) {
    const metrics = await fetch(`${n.url}/api/metrics`).then((r) => r.text(), (e: Error) => e.message);
    const shown = metrics.split("\n").filter((l) => /^tabgrid_(volunteer_connections|worker_threads|tasks_queued|tasks_running) /.test(l));
    out.push(`${n.url}: ${shown.join(", ")}\n${n.output().trim().split("\n").slice(-15).join("\n")}`);
  }
  return out.join("\n");
}
