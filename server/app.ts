import http from "node:http";
import type net from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import type { TRPCError } from "@trpc/server";
import { createHTTPHandler } from "@trpc/server/adapters/standalone";
import { applyWSSHandler } from "@trpc/server/adapters/ws";
import type { Env } from "./env";
import { createPrisma, dbKind, pgPool } from "./store/prisma";
import { createBlobStore } from "./store/blobs";
import { Coordinator } from "./coordinator/coordinator";
import { appRouter } from "./api/root";
import { clientIp, contextFromRequest, type ProcedureMeta } from "./api/trpc";
import { DEFAULT_TRUST } from "./scheduler/credibility";
import { identify } from "./auth/session";
import { health } from "./http/health";
import { serveResult } from "./http/results";
import { serveUploads } from "./http/uploads";
import { serveAdMedia } from "./http/adMedia";
import { ensureDefaultCreative } from "./services/ads/creatives";
import { serveSandbox } from "./http/sandbox";
import { serveMetrics } from "./http/metrics";
import { createLoadGate, ESTIMATE_COST, hasBody } from "./http/loadGate";
import { trpcBodies } from "./http/trpcBody";
import { collectJobInputs, diskShort } from "./services/programs/files";
import { measureEndedJobs, outputsSettled } from "./services/programs/outputStorage";
import { formatBytes } from "./http/body";
import { SIGN_IN_BURST, SIGN_IN_EVERY_S, signInLimit } from "./http/signInLimit";
import { AddressCounts } from "./http/addressCounts";
import { openFileLimit, volunteerSocketCap } from "./http/openFiles";
import { addressKey } from "./coordinator/network";
import { guardTrpcSocket, TrpcSocketBudget } from "./http/trpcSocketGuard";
import { MAX_TRPC_BATCH, TRPC_MAX_BODY_BYTES } from "./api/batch";
import { createMonitoring, type MonitoringOptions } from "./monitoring/monitoring";
import { startAlerting } from "./monitoring/alerts/manager";
import { limitSubmissions, MAX_SUBMISSIONS_IN_FLIGHT } from "./services/jobs/submissionRate";
import { startCluster } from "./cluster/cluster";
import { shareWithCluster } from "./cluster/share";
import { redactUrl } from "./store/databaseUrl";
import type { AppDeps } from "./services/deps";
import { VOLUNTEER_WS_PATH } from "../worker/protocol/messages";
import { setServerProgramMaxMs } from "../worker/sandbox/reduceOnServer";
import { BlobTokens } from "./coordinator/blobTokens";

export const TRPC_WS_PATH = "/api/trpc-ws";

export interface RunningServer {
  url: string;
  port: number;
  deps: AppDeps;
  close(): Promise<void>;
}

/** How often ended jobs' stored inputs are looked for and removed (collectJobInputs). */
const INPUT_COLLECT_MS = 30_000;

/**
 * One process, one module graph: the coordinator, tRPC (HTTP and WebSocket), the volunteer
 * socket, health and results are mounted here, before Next's handler, so there is exactly
 * one scheduler in memory. `ui: false` skips Next (API-only tests start in well under a second).
 */
export async function startServer(
  env: Env,
  opts: { ui: boolean; log?: (m: string) => void; /** Tests shorten the sampler's minute or inject its clock. */ monitoring?: MonitoringOptions },
): Promise<RunningServer> {
  const log = opts.log ?? ((m: string) => console.log(m));
  // A blob store that does not answer now (no such bucket, refused credentials, a wrong
  // endpoint) is a configuration to fix: refuse to start rather than fail the first upload.
  const blobs = await createBlobStore(env);
  setServerProgramMaxMs(env.SERVER_PROGRAM_MAX_SECONDS * 1000);
  const blobsAnswer = await blobs.check();
  if (blobsAnswer !== "ok") {
    await blobs.close();
    throw new Error(`The blob store (${blobs.describe()}) does not answer: ${blobsAnswer}`);
  }
  const db = createPrisma(env.DATABASE_URL);
  // SQLite: readers never wait for the writer (the mode is kept in the file). PostgreSQL needs nothing of the kind.
  if (dbKind(db) === "sqlite") await db.$executeRawUnsafe("PRAGMA journal_mode = WAL");
  const cluster = startCluster({ redisUrl: env.REDIS_URL, nodeId: env.NODE_ID, prefix: env.REDIS_PREFIX, log });
  const monitor = createMonitoring({ db, env, log, ...(cluster.mode === "cluster" ? { node: cluster.nodeId } : {}), ...opts.monitoring });
  let listeningAt = "";
  // One object, so that diskShort's reading of the disk (at most once a second) is shared.
  const diskOf = { env, blobs };
  const coordinator = new Coordinator({
    ...(cluster.mode === "cluster" ? { cluster: { pool: pgPool(db), nodeId: cluster.nodeId, url: () => listeningAt, leaseMs: env.SLICE_LEASE_SECONDS * 1000, claimEveryMs: env.SLICE_CLAIM_SECONDS * 1000 } } : {}),
    db, blobs, commitIntervalMs: env.COMMIT_INTERVAL_MS, log, blobTokens: new BlobTokens(env.NEXTAUTH_SECRET), observer: monitor.observer, maxMessageBytes: env.MAX_WS_MESSAGE_BYTES, strayResultsPerSecond: env.STRAY_RESULTS_PER_SECOND,
    newVolunteers: cluster.limiter("new-volunteers", env.NEW_VOLUNTEERS_PER_ADDRESS / 3600, env.NEW_VOLUNTEERS_PER_ADDRESS),
    banPolicy: { afterInvalid: env.BAN_AFTER_INVALID, hours: env.BAN_HOURS },
    errorWaitMs: env.ERROR_WAIT_SECONDS * 1000,
    auditCpuShare: env.AUDIT_CPU_SHARE,
    diskShort: () => diskShort(diskOf, 0),
    outputs: { unitBytes: env.UNIT_OUTPUT_BYTES, quota: env.ACCOUNT_STORAGE_BYTES, held: (ownerId, ended) => outputsSettled(db, ownerId, ended) },
    trust: env.SPOT_CHECKS === "on"
      ? { ...DEFAULT_TRUST, minSpotRate: env.SPOT_CHECK_MIN_RATE, threshold: env.TRUST_THRESHOLD, faultRate: env.TRUST_FAULT_RATE }
      : null,
  });
  const monitoring = await monitor.start(coordinator);
  const shared = shareWithCluster(cluster, coordinator, { url: () => listeningAt, log });
  limitSubmissions(coordinator, env, monitor.observer, cluster);
  const deps: AppDeps = { db, env, blobs, coordinator, monitoring, cluster, presence: shared.presence, ...(shared.elsewhere ? { elsewhere: shared.elsewhere } : {}) };
  // One node evaluates the alert rules at a time (alone, this one), so an incident is notified once.
  let alerting: ReturnType<typeof startAlerting> | undefined;
  const alertLeader = env.TABGRID_ALERTS === "on" ? cluster.leader("alerts") : undefined;
  alertLeader?.onChange((leading) => {
    if (leading && !alerting) {
      alerting = startAlerting(deps, monitoring.sampler, { log });
      if (cluster.mode === "cluster") log(`[cluster] ${cluster.nodeId} evaluates the alert rules`);
    } else if (!leading && alerting) {
      void alerting.stop();
      alerting = undefined;
    }
  });
  await coordinator.recover();
  await ensureDefaultCreative(deps);

  const createContext = contextFromRequest(deps);
  // Clients get a generic message for an internal error (server/api/trpc.ts); the log gets it all.
  const onError = ({ error, type, path }: { error: TRPCError; type: string; path?: string }) => {
    if (error.code === "INTERNAL_SERVER_ERROR") log(`tRPC ${type} ${path ?? "?"} failed: ${error.cause?.stack ?? error.stack}`);
  };
  const trpc = createHTTPHandler({ router: appRouter, createContext, onError, basePath: "/api/trpc/", maxBodySize: TRPC_MAX_BODY_BYTES, maxBatchSize: MAX_TRPC_BATCH });

  let nextHandler: http.RequestListener | undefined;
  let nextUpgrade: ((req: http.IncomingMessage, socket: Duplex, head: Buffer) => void) | undefined;
  if (opts.ui) {
    // Next reads its auth settings from the environment of this same process.
    process.env.NEXTAUTH_SECRET = env.NEXTAUTH_SECRET;
    process.env.DATABASE_URL = env.DATABASE_URL;
    process.env.NEXT_TELEMETRY_DISABLED ??= "1";
    const { default: next } = await import("next");
    const app = next({ dev: env.NODE_ENV === "development", dir: process.cwd(), port: env.PORT });
    await app.prepare();
    nextHandler = app.getRequestHandler() as http.RequestListener;
    nextUpgrade = app.getUpgradeHandler() as typeof nextUpgrade;
  }

  // At run time a router keeps its procedures flat, by their dotted path (its type nests them).
  const operatorCalls = new Set(Object.entries(appRouter._def.procedures as unknown as Record<string, { _def: { meta?: ProcedureMeta } }>)
    .filter(([, p]) => p._def.meta?.operator).map(([path]) => path));
  /** Who a request comes from: the socket's address, or the proxies' word for it (TRUST_PROXY). */
  const ipOf = (req: http.IncomingMessage) => clientIp(req, env.TRUST_PROXY);
  const gate = createLoadGate({
    delayMs: env.LOAD_SHED_DELAY_MS, maxRequests: env.LOAD_SHED_MAX_REQUESTS, maxPerCaller: env.LOAD_SHED_MAX_PER_CALLER,
    perCallerRate: env.LOAD_SHED_CALLER_RATE,
    onShed: () => monitor.observer.shed("overloaded"), operator: (p) => operatorCalls.has(p),
    // Past this, admitSubmission would refuse them after authenticating each one.
    perProcedure: { "jobs.submit": MAX_SUBMISSIONS_IN_FLIGHT },
    // Public and cut into every unit to price them (a job of 10,000 units: ~25 ms of the loop).
    procedureCost: { "jobs.estimate": ESTIMATE_COST },
    ipOf: (req) => ipOf(req),
  });
  const signIns = signInLimit(cluster.limiter("sign-in", 1 / SIGN_IN_EVERY_S, SIGN_IN_BURST), ipOf);
  const trpcBody = trpcBodies({ maxBytes: TRPC_MAX_BODY_BYTES, minRate: env.UPLOAD_MIN_BYTES_PER_SECOND, ipOf });
  const route = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = req.url ?? "/";
    const pathname = url.split("?")[0];
    if (gate.shed(req, res, pathname)) return;
    if (await signIns(req, res, pathname)) return;
    if (pathname.startsWith("/api/trpc/")) {
      // A call with a body is counted in progress once its body is here (trpcBody.ts).
      if (hasBody(req) && ((await trpcBody(req, res, pathname)) || gate.admit(req, res, pathname))) return;
      return trpc(req, res);
    }
    if (pathname === "/api/health") return await health(db, cluster, blobs, res, log);
    if (pathname === "/api/metrics") return await serveMetrics(monitoring.registry, env.METRICS_TOKEN, req, res);
    if (await serveSandbox(req, res, pathname)) return;
    if (req.method === "GET" && (await serveResult(deps, req, res, pathname))) return;
    if (pathname.startsWith("/api/ads/media") && (await serveAdMedia(deps, req, res, pathname))) return;
    if (pathname.startsWith("/api/") && (await serveUploads(deps, req, res, new URL(url, "http://localhost")))) return;
    if (nextHandler) return await nextHandler(req, res);
    res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: "Not found" }));
  };
  // A handler that throws (or rejects) answers a generic 500, never its message or stack, and
  // never reaches the process; the log gets the details.
  const server = http.createServer((req, res) => {
    route(req, res).catch((e: unknown) => {
      log(`request ${req.method} ${(req.url ?? "/").split("?")[0]} failed: ${(e as Error)?.stack ?? String(e)}`);
      try {
        if (!res.headersSent) res.writeHead(500, { "content-type": "application/json", "cache-control": "no-store" }).end(JSON.stringify({ error: "Internal error" }));
        else res.destroy(); // part of a body is out: cut it short rather than append to it
      } catch {
        res.destroy();
      }
    });
  });
  // A request's headers arrive within 10 s, not Node's 60: 3,000 requests sent a byte at a time
  // held their sockets (and files) for a minute each. And one address holds at most
  // CONNECTIONS_PER_ADDRESS connections of any kind (requests, volunteers, subscriptions): one
  // opening them faster than they time out would otherwise take every file the process may
  // open. Behind a proxy (TRUST_PROXY ≥ 1) every connection comes from it: the proxy limits them.
  server.headersTimeout = 10_000;
  if (env.TRUST_PROXY === 0) {
    const connections = new AddressCounts(env.CONNECTIONS_PER_ADDRESS, addressKey);
    server.on("connection", (socket: net.Socket) => {
      const release = connections.admit(socket.remoteAddress ?? "unknown");
      if (!release) {
        monitor.observer.shed("connection-refused");
        socket.destroy();
        return;
      }
      socket.once("close", release);
    });
  }

  const volunteerWss = new WebSocketServer({ noServer: true, maxPayload: env.MAX_WS_MESSAGE_BYTES });
  // Sockets over MAX_VOLUNTEER_CONNECTIONS are upgraded here only to be closed; untracked, so
  // they never count against the cap.
  const refusedWss = new WebSocketServer({ noServer: true, clientTracking: false, maxPayload: 1024 });
  const trpcWss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  // Registered before tRPC's own listener, so that it vets every frame first.
  const trpcBudget = new TrpcSocketBudget();
  trpcWss.on("connection", (ws: WebSocket, req: http.IncomingMessage) => guardTrpcSocket(ws, trpcBudget, ipOf(req)));
  const trpcWs = applyWSSHandler({ wss: trpcWss, router: appRouter, createContext, onError, keepAlive: { enabled: true, pingMs: 30_000, pongWaitMs: 5_000 } });
  // Ended jobs' stored inputs go, and their bytes back to their owners' budget (files.ts);
  // their outputs are measured against their owners' (outputStorage.ts).
  // The pass in flight, awaited by close() before the database goes.
  let collecting: Promise<void> | undefined;
  const collector = setInterval(() => {
    if (collecting) return;
    collecting = collectJobInputs(deps)
      .then((r) => r.blobs && log(`removed ${r.blobs} input blob(s) of ${r.jobs} ended job(s), ${formatBytes(r.bytes)}`))
      .then(() => measureEndedJobs(deps))
      .then(() => undefined, (e: Error) => log(`collecting or measuring ended jobs failed: ${e.message}`))
      .finally(() => (collecting = undefined));
  }, INPUT_COLLECT_MS);
  collector.unref();
  const heartbeat = setInterval(() => {
    // A volunteer that vanished without closing its socket loses its leases here.
    for (const ws of volunteerWss.clients) {
      if ((ws as { alive?: boolean }).alive === false) ws.terminate();
      else ((ws as { alive?: boolean }).alive = false), ws.ping();
    }
  }, 30_000);

  // One client held all 20,000 volunteer sockets (the same id, no work asked for), and with them
  // every file the process may open: a cap per address, and the whole cap below that limit.
  const fileLimit = openFileLimit();
  const maxVolunteers = volunteerSocketCap(env.MAX_VOLUNTEER_CONNECTIONS, fileLimit);
  if (maxVolunteers < env.MAX_VOLUNTEER_CONNECTIONS) {
    log(`volunteer sockets: at most ${maxVolunteers}, not MAX_VOLUNTEER_CONNECTIONS=${env.MAX_VOLUNTEER_CONNECTIONS}: this process may open ${fileLimit} files (ulimit -n)`);
  }
  const volunteerSockets = new AddressCounts(env.VOLUNTEER_SOCKETS_PER_ADDRESS, addressKey);

  /** Upgraded only to be closed with 1013 (try again later): browsers report a close code, not an HTTP status. */
  const refuseVolunteer = (req: http.IncomingMessage, socket: Duplex, head: Buffer, reason: string) => {
    refusedWss.handleUpgrade(req, socket, head, (ws) => {
      ws.close(1013, reason);
      // A client that ignores the close frame would otherwise hold its socket for 30 s.
      setTimeout(() => ws.terminate(), 1000).unref();
    });
  };
  const upgrade = async (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const pathname = (req.url ?? "/").split("?")[0];
    if (pathname === VOLUNTEER_WS_PATH) {
      // Behind on the event loop: no new volunteer (nor its sign-in lookup) until it catches up.
      if (gate.busy()) {
        monitor.observer.shed("overloaded");
        return refuseVolunteer(req, socket, head, "the server is overloaded; try again later");
      }
      const who = await identify(db, req, env.NEXTAUTH_SECRET).catch((e: Error) => {
        log(`volunteer upgrade: could not identify the caller: ${e.stack ?? e.message}`);
        return null;
      });
      if (!who) {
        socket.end("HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nInternal error\n");
        return;
      }
      if (who.error) {
        socket.end(`HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${who.error}\n`);
        return;
      }
      // Checked after the await above and right before handleUpgrade, which adds the socket to
      // `clients` synchronously, so a burst cannot slip past the cap. The refusal is a close
      // frame (1013, try again later) rather than an HTTP error: browsers only report a code.
      if (volunteerWss.clients.size >= maxVolunteers) {
        monitor.observer.shed("connection-refused");
        return refuseVolunteer(req, socket, head, "too many volunteers connected; try again later");
      }
      const address = ipOf(req);
      const release = volunteerSockets.admit(address);
      if (!release) {
        monitor.observer.shed("connection-refused");
        return refuseVolunteer(req, socket, head, "too many volunteers connected from your network address; try again later");
      }
      socket.once("close", release);
      volunteerWss.handleUpgrade(req, socket, head, (ws) => {
        (ws as { alive?: boolean }).alive = true;
        ws.on("pong", () => ((ws as { alive?: boolean }).alive = true));
        coordinator.handleConnection(ws, { userId: who.user?.id ?? null, ...(who.keyId ? { keyId: who.keyId } : {}), address });
      });
    } else if (pathname === TRPC_WS_PATH) {
      // Subscriptions cost memory and a first snapshot each: none start while the loop is
      // behind, and one address holds a bounded number of sockets (trpcSocketGuard.ts).
      if (gate.busy()) {
        monitor.observer.shed("overloaded");
        socket.end("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nConnection: close\r\n\r\n");
        return;
      }
      const release = trpcBudget.admit(ipOf(req));
      if (!release) {
        monitor.observer.shed("connection-refused");
        socket.end("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nConnection: close\r\n\r\n");
        return;
      }
      socket.once("close", release);
      trpcWss.handleUpgrade(req, socket, head, (ws) => trpcWss.emit("connection", ws, req));
    } else if (nextUpgrade) {
      nextUpgrade(req, socket, head);
    } else {
      socket.destroy();
    }
  };
  server.on("upgrade", (req, socket, head) => {
    socket.on("error", () => socket.destroy());
    upgrade(req, socket, head).catch((e: unknown) => {
      log(`upgrade ${(req.url ?? "/").split("?")[0]} failed: ${(e as Error)?.stack ?? String(e)}`);
      socket.destroy();
    });
  });

  // Node's default accept backlog (511) overflows when thousands of volunteers reconnect at
  // once (after a restart): the kernel drops their SYNs and they retry 1, 3, 7 s later. The
  // kernel caps this at net.core.somaxconn (4096 on current Linux).
  await new Promise<void>((resolve) => server.listen({ port: env.PORT, host: env.HOST, backlog: 4096 }, resolve));
  const port = (server.address() as { port: number }).port;
  const url = `http://127.0.0.1:${port}`;
  // next-auth builds its callback URLs from this; read per request, so setting it now is in time.
  process.env.NEXTAUTH_URL = env.PUBLIC_URL ?? `http://localhost:${port}`;
  listeningAt = env.PUBLIC_URL ?? `http://localhost:${port}`;
  const where = cluster.mode === "cluster" ? `, node ${cluster.nodeId} of a cluster` : "";
  log(`Tabgrid listening on http://localhost:${port} (database ${redactUrl(env.DATABASE_URL)}, blobs in ${blobs.describe()}${where}${opts.ui ? "" : ", API only"})`);

  return {
    url,
    port,
    deps,
    async close() {
      clearInterval(heartbeat);
      clearInterval(collector);
      gate.stop();
      trpcWs.broadcastReconnectNotification();
      for (const ws of volunteerWss.clients) ws.close(1001, "server shutting down");
      for (const ws of trpcWss.clients) ws.close(1001, "server shutting down");
      await alertLeader?.close();
      await alerting?.stop();
      await shared.stop();
      await monitoring.sampler.stop();
      await collecting;
      await coordinator.close();
      await cluster.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await db.$disconnect();
      await blobs.close();
    },
  };
}
