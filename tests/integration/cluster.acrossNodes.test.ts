import crypto from "node:crypto";
import WebSocket from "ws";
import { createTRPCClient, createWSClient, wsLink } from "@trpc/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseEnv } from "../../server/env";
import { startServer, TRPC_WS_PATH, type RunningServer } from "../../server/app";
import type { AppRouter } from "../../server/api/root";
import { RawVolunteer, trpc, trpcError } from "../helpers/clients";
import { createUserWithKey, startCliVolunteer, TEST_SECRET, waitFor, type CliVolunteer } from "../helpers/server";
import { freshPostgres, type TestDatabase } from "../helpers/testDb";

// Two nodes of one cluster (one PostgreSQL database, one Redis), in this process: what one
// node does or sees reaches the other. The only volunteer is on node B; everything is asked of A.
const REDIS = process.env.REDIS_TEST_URL ?? "redis://127.0.0.1:6379";

describe("a cluster of two nodes: what is done on one reaches the other", () => {
  let pg: TestDatabase;
  let a: RunningServer;
  let b: RunningServer;
  let volunteer: CliVolunteer;
  let consumer: { apiKey: string };
  let admin: { apiKey: string };

  beforeAll(async () => {
    pg = await freshPostgres();
    const prefix = `tabgrid-across-${crypto.randomBytes(4).toString("hex")}:`;
    const start = (id: string) => startServer(parseEnv({
      PORT: "0", HOST: "127.0.0.1", LOAD_SHED_DELAY_MS: "0", LOAD_SHED_MAX_REQUESTS: "0", DATABASE_URL: pg.databaseUrl, DATA_DIR: pg.dir, COMMIT_INTERVAL_MS: "2", TABGRID_UI: "off",
      NEXTAUTH_SECRET: TEST_SECRET, NODE_ENV: "test", REDIS_URL: REDIS, REDIS_PREFIX: prefix, NODE_ID: id, SLICE_LEASE_SECONDS: "10",
      SPOT_CHECKS: "off", TABGRID_ALERTS: "off", SUBMISSIONS_PER_SECOND: "0.01", SUBMISSION_BURST: "4",
    }), { ui: false, log: () => {} });
    [a, b] = await Promise.all([start("node-a"), start("node-b")]);
    admin = await createUserWithKey(a.deps, "admin@example.com");
    await a.deps.db.user.update({ where: { email: "admin@example.com" }, data: { role: "admin" } });
    consumer = await createUserWithKey(a.deps, "consumer@example.com");
    volunteer = startCliVolunteer(b.url, 2, { name: "on-b", dir: pg.dir });
    await waitFor(() => b.deps.coordinator.volunteers().length === 1, 20_000, "the volunteer on node B");
    // Nodes tell each other who is on them every 2 s: node A knows of the volunteer once B has said so.
    await waitFor(async () => (await a.deps.presence.nodes()).find((n) => n.id === "node-b")?.volunteers.length === 1, 10_000, "node A to hear of node B's volunteer");
  }, 120_000);
  afterAll(async () => {
    await volunteer?.stop();
    await Promise.all([a?.close(), b?.close()]);
    await pg?.remove();
  });

  it("a page on node A follows, live, a job computed through node B", async () => {
    class KeyedWebSocket extends WebSocket {
      constructor(url: string | URL) {
        super(url, { headers: { authorization: `Bearer ${consumer.apiKey}` } });
      }
    }
    const { id } = await trpc(a.url, consumer.apiKey).jobs.submit.mutate({
      // ~1.5 s of work on the volunteer's two threads: long enough for the watch (an update
      // every 200 ms at most) to catch it half way on a fast machine.
      kernel: "pi", chunks: 300, params: { samples: 300 * 2_000_000 }, replication: { replicas: 1, adaptive: false },
    });
    const wsClient = createWSClient({ url: `${a.url.replace(/^http/, "ws")}${TRPC_WS_PATH}`, WebSocket: KeyedWebSocket as unknown as typeof globalThis.WebSocket });
    const client = createTRPCClient<AppRouter>({ links: [wsLink({ client: wsClient })] });
    const seen: Array<{ state: string; status: string; unitsDone: number; total: number }> = [];
    try {
      await new Promise<void>((resolve, reject) => {
        const sub = client.jobs.watch.subscribe({ id }, {
          onData: (job) => {
            seen.push({ state: job.state, status: job.status, unitsDone: job.unitsDone, total: job.progress.total });
            if (job.state !== "running") {
              sub.unsubscribe();
              resolve();
            }
          },
          onError: reject,
        });
      });
    } finally {
      await wsClient.close();
    }
    // Node A never held a slice of it: B computed it all, and A's page saw it happen.
    expect(a.deps.coordinator.slices()).toEqual([]);
    expect(seen.at(-1)).toEqual({ state: "completed", status: "completed", unitsDone: 300, total: 300 });
    // Half way, A shows the whole job as running (B holds its slices), not "queued".
    const midway = seen.filter((s) => s.unitsDone > 0 && s.unitsDone < 300);
    expect(midway.length, JSON.stringify(seen)).toBeGreaterThan(0);
    expect(midway.every((s) => s.status === "running" && s.total === 300), JSON.stringify(midway)).toBe(true);
  });

  it("a program job's blobs, fetched from node A, which never ran it, with the tokens its tasks carried", async () => {
    // What a load balancer does to a volunteer on node B: its downloads may go to node A.
    const owner = await createUserWithKey(a.deps, "blob-owner@example.com");
    const post = (kind: "programs" | "data", body: string, name: string) =>
      fetch(`${a.url}/api/${kind}?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${owner.apiKey}` }, body }).then((r) => r.json());
    const data = (await post("data", Array.from({ length: 64 }, (_, i) => `line ${i}`).join("\n"), "lines.txt")) as { hash: string };
    const program = (await post("programs", "export function run(text) { return text.length; }\n", "len.js")) as { hash: string; scriptHash: string };
    const raw = await RawVolunteer.connect(b.url);
    try {
      raw.hello(4);
      await raw.next("welcome");
      const api = trpc(a.url, owner.apiKey);
      const { id } = await api.jobs.submit.mutate({ kernel: "program", program: program.hash, input: { mode: "lines", data: data.hash }, chunks: 16, replication: { replicas: 1 } } as never);
      const [task] = (await raw.next("tasks", 0, 20_000)).tasks;
      const chunk = (task.input as { blob: string }).blob;
      expect(a.deps.coordinator.slices()).toEqual([]);
      const get = async (hash: string, token?: string) => {
        const res = await fetch(`${a.url}/api/blobs/${hash}${token ? `?t=${encodeURIComponent(token)}` : ""}`);
        await res.arrayBuffer();
        return res.status;
      };
      for (const hash of [program.scriptHash, chunk]) {
        expect(await get(hash)).toBe(404);
        expect(await get(hash, task.blobs?.[hash])).toBe(200);
      }
      // The raw volunteer leaves; the CLI volunteer on B finishes the job, fetching with its tokens.
      await raw.close();
      await waitFor(async () => (await api.jobs.get.query({ id })).state !== "running", 60_000, "the program job to end");
      expect((await api.jobs.get.query({ id })).state).toBe("completed");
    } finally {
      await raw.close();
      // The tests after this one count node B's volunteers as node A hears of them (every 2 s).
      await waitFor(async () => (await a.deps.presence.nodes()).find((n) => n.id === "node-b")?.volunteers.length === 1, 20_000, "node A to hear that the raw volunteer left node B");
    }
  }, 120_000);

  it("an iterative job (k-means) submitted on node A runs its rounds through node B to the end", async () => {
    const api = trpc(a.url, consumer.apiKey);
    const { id } = await api.jobs.submit.mutate({ kernel: "kmeans", chunks: 6, params: { seed: 2024, k: 6, spread: 3, points: 30_000 }, replication: { replicas: 1, adaptive: false } });
    await waitFor(async () => (await api.jobs.get.query({ id })).state !== "running", 60_000, "the k-means job to end");
    const job = await api.jobs.get.query({ id });
    expect(job.state).toBe("completed");
    const rounds = await a.deps.db.jobRound.findMany({ where: { jobId: id }, orderBy: { round: "asc" } });
    expect(rounds.length).toBeGreaterThanOrEqual(2);
    expect(rounds.at(-1)!.done).toBe(true);
    // Each round was one slice, held by node B, and none is left to claim.
    const slices = await a.deps.db.slice.findMany({ where: { jobId: id } });
    expect(slices.map((x) => x.round).sort((p, q) => p - q)).toEqual(rounds.map((r) => r.round));
    expect(slices.every((x) => x.done && x.owner === "node-b")).toBe(true);
  }, 120_000);

  it("the admin page on node A lists the volunteer on node B, and both nodes", async () => {
    const api = trpc(a.url, admin.apiKey);
    const rows = await api.admin.volunteers.query({ limit: 10 });
    expect(rows.find((r) => r.id === volunteer.identity.volunteerId)).toMatchObject({ onlineThreads: 2 });
    const { mode, nodes } = await api.admin.nodes.query();
    expect(mode).toBe("cluster");
    expect(nodes.map((n) => [n.id, n.health, n.volunteers])).toEqual([["node-a", "up", 0], ["node-b", "up", 1]]);
    // The public summary (CLI `status`, the volunteer page) is the whole cluster's.
    expect(await trpc(a.url).cluster.status.query()).toMatchObject({ nodes: 2, volunteers: 1, threads: 2 });
  });

  it("a cancel on node A stops node B's tasks", async () => {
    const api = trpc(a.url, consumer.apiKey);
    const { id } = await api.jobs.submit.mutate({
      kernel: "pi", chunks: 2000, params: { samples: 2000 * 5_000_000 }, replication: { replicas: 1, adaptive: false },
    });
    await waitFor(() => (b.deps.coordinator.progress(id)?.running ?? 0) > 0, 20_000, "node B to compute the job");
    await api.jobs.cancel.mutate({ id });
    await waitFor(() => b.deps.coordinator.progress(id) === undefined, 5000, "node B to stop the job's tasks");
    expect((await a.deps.db.job.findUniqueOrThrow({ where: { id } })).state).toBe("cancelled");
    expect(b.deps.coordinator.status().tasksRunning).toBe(0);
  });

  it("one account's submission budget holds across both nodes", async () => {
    const other = await createUserWithKey(a.deps, "budget@example.com");
    const submit = (s: RunningServer) => trpc(s.url, other.apiKey).jobs.submit.mutate({ kernel: "pi", chunks: 1, params: { samples: 1000 }, replication: { replicas: 1, adaptive: false } });
    // A burst of 4 in all, then nothing for 100 s: two on each node, and the fifth is refused wherever it goes.
    for (const s of [a, b, a, b]) await submit(s);
    expect(await trpcError(submit(b))).toMatchObject({ code: "TOO_MANY_REQUESTS" });
    expect(await trpcError(submit(a))).toMatchObject({ code: "TOO_MANY_REQUESTS" });
  });

  it("a calculation asked of node A, which has no volunteer, is computed by the one on node B", async () => {
    const answer = await trpc(a.url).calc.evaluate.mutate({ expression: "2*(3+4)/5" });
    expect(answer).toMatchObject({ value: 2.8, volunteerId: volunteer.identity.volunteerId });
    // A malformed expression is refused before anything is routed; a math error comes back as such.
    expect(await trpcError(trpc(a.url).calc.evaluate.mutate({ expression: "2*(" }))).toMatchObject({ code: "BAD_REQUEST" });
    expect(await trpcError(trpc(a.url).calc.evaluate.mutate({ expression: "1/0" }))).toMatchObject({ code: "BAD_REQUEST" });
  });

  it("an API key revoked on node A closes the volunteer signed in with it on node B", async () => {
    const api = trpc(a.url, consumer.apiKey);
    const key = await api.account.createApiKey.mutate({ name: "on-b" });
    const v = await RawVolunteer.connect(b.url, { headers: { authorization: `Bearer ${key.key}` } });
    v.hello(1);
    await v.next("welcome");
    await api.account.revokeApiKey.mutate({ id: key.id });
    expect(await v.waitClosed()).toEqual({ code: 1008, reason: "API key revoked" });
    await waitFor(() => !b.deps.coordinator.volunteers().some((x) => x.volunteerId === v.identity.volunteerId), 5000, "node B to drop it");
  });

  it("a ban issued on node A cuts the host on node B at once", async () => {
    await trpc(a.url, admin.apiKey).admin.ban.mutate({ id: `host:${volunteer.identity.volunteerId}`, hours: 1, reason: "test" });
    await waitFor(() => b.deps.coordinator.volunteers().length === 0, 5000, "node B to close the banned host's socket");
    await waitFor(() => /banned/i.test(volunteer.output()), 5000, "the volunteer to be told");
  });

  it("a job no node computes (no volunteer left) is cancelled from node A, its escrow returned", async () => {
    const api = trpc(a.url, consumer.apiKey);
    const { id } = await api.jobs.submit.mutate({ kernel: "pi", chunks: 50, params: { samples: 50_000 }, replication: { replicas: 1, adaptive: false } });
    expect((await api.jobs.get.query({ id })).status).toBe("queued");
    const cancelled = await api.jobs.cancel.mutate({ id });
    expect(cancelled.state).toBe("cancelled");
    expect((await a.deps.db.account.findUniqueOrThrow({ where: { id: `escrow:${id}` } })).balance).toBe(0);
  });

  it("a volunteer on node B that lies to a calculation asked of node A is banned on both", async () => {
    const liar = await RawVolunteer.connect(b.url);
    liar.ws.on("message", (data) => {
      const m = JSON.parse(data.toString()) as { type: string; id?: string };
      if (m.type === "interactive") liar.send({ type: "interactive-result", id: m.id, value: 1337, ops: [] });
    });
    liar.hello(2);
    await liar.next("welcome");
    await waitFor(async () => (await a.deps.presence.nodes()).find((n) => n.id === "node-b")?.volunteers.length === 1, 10_000, "node A to hear of the volunteer on B");
    const answer = await trpc(a.url).calc.evaluate.mutate({ expression: "6*7" });
    expect(answer).toMatchObject({ value: 42, volunteerId: "the server" });
    // Node B, which holds its socket, caught it: told, closed, and refused by node A as well.
    expect(await liar.next("error")).toMatchObject({ code: "banned", message: expect.stringMatching(/answered a calculation wrong: "6\*7" is 42, not 1337/) });
    expect(await liar.waitClosed()).toEqual({ code: 1008, reason: "banned" });
    const again = await RawVolunteer.connect(a.url, { identity: liar.identity });
    again.hello(1);
    expect(await again.next("error")).toMatchObject({ code: "hello-refused", message: expect.stringMatching(/^banned until .*answered a calculation wrong/) });
    again.close();
  });
});
