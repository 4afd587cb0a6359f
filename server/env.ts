import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import { z } from "zod";
import { DEFAULT_DATABASE_URL, databaseFile, databaseKind } from "./store/databaseUrl";
import { parseBlobStore } from "./store/blobConfig";

/** An empty variable counts as unset (`FOO=` in a unit file or a compose file). */
const unsetIfEmpty = (v: unknown) => (v === "" ? undefined : v);

// Parsed once at start-up; every default makes `npm start` work on a fresh machine.
const schema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().default("0.0.0.0"),
  // A SQLite file, or a PostgreSQL database (postgres://user:password@host:5432/name).
  DATABASE_URL: z.string().default(DEFAULT_DATABASE_URL).refine(isDatabaseUrl, "must be a SQLite file: URL (file:./data/tabgrid.db) or a postgres:// URL"),
  DATA_DIR: z.string().default("./data"),
  // Blobs (docs/scaling.md): unset or "directory" is DATA_DIR/blobs; s3://bucket/optional/prefix
  // an S3-compatible bucket. S3_ENDPOINT names a server other than AWS (MinIO, R2, Ceph…);
  // path-style URLs (http://host/bucket/key) are the default with an endpoint.
  BLOB_STORE: z.preprocess(unsetIfEmpty, z.string().optional()).superRefine((v, ctx) => {
    try {
      parseBlobStore(v);
    } catch (e) {
      ctx.addIssue({ code: "custom", message: (e as Error).message });
    }
  }),
  S3_ENDPOINT: z.preprocess(
    unsetIfEmpty,
    z.string().regex(/^https?:\/\/[^/?#@\s]+(\/[^?#@\s]*)?$/, "must be an http:// or https:// URL such as http://minio.internal:9000, without credentials").optional(),
  ),
  S3_REGION: z.preprocess(unsetIfEmpty, z.string().regex(/^[a-z0-9-]{1,32}$/, "must be a region name such as us-east-1 (auto for R2)").default("us-east-1")),
  S3_FORCE_PATH_STYLE: z.preprocess(unsetIfEmpty, z.enum(["true", "false", "1", "0"], "must be true or false").optional()).transform((v) => (v === undefined ? undefined : v === "true" || v === "1")),
  // The S3 store's credentials when both are set; otherwise the AWS SDK's own chain.
  AWS_ACCESS_KEY_ID: z.preprocess(unsetIfEmpty, z.string().optional()),
  AWS_SECRET_ACCESS_KEY: z.preprocess(unsetIfEmpty, z.string().optional()),
  AWS_SESSION_TOKEN: z.preprocess(unsetIfEmpty, z.string().optional()),
  PUBLIC_URL: z.string().url().optional(),
  NEXTAUTH_SECRET: z.string().min(16).optional(),
  STARTER_CREDITS: z.coerce.number().min(0).default(100),
  STARTER_GRANTS_PER_ADDRESS: z.coerce.number().int().min(1).default(3),
  PRICE_PER_CPU_SECOND: z.coerce.number().positive().default(1),
  BAN_AFTER_INVALID: z.coerce.number().int().min(1).default(3),
  BAN_HOURS: z.coerce.number().positive().default(24),
  // Sabotage tolerance (docs/trust.md): server spot-checks of built-in kernels, credibility, probation, placement.
  SPOT_CHECKS: z.enum(["on", "off"]).default("on"),
  SPOT_CHECK_MIN_RATE: z.coerce.number().min(0).max(1).default(0.05),
  AUDIT_CPU_SHARE: z.coerce.number().gt(0).max(1).default(0.25),
  TRUST_THRESHOLD: z.coerce.number().min(0).max(1).default(0.999),
  TRUST_FAULT_RATE: z.coerce.number().gt(0).lt(1).default(0.2),
  LEASE_SECONDS: z.coerce.number().positive().default(60),
  /** A unit that errored on every volunteer online that may take it fails its job after this long with no other coming. */
  ERROR_WAIT_SECONDS: z.coerce.number().min(0).default(15),
  MAX_CHUNKS: z.coerce.number().int().positive().default(10000),
  MAX_PROGRAM_BYTES: z.coerce.number().int().positive().default(5 * 1024 * 1024),
  MAX_DATA_BYTES: z.coerce.number().int().positive().default(64 * 1024 * 1024),
  /** Bytes of programs and data files one account may keep stored; 0: no quota. */
  ACCOUNT_STORAGE_BYTES: z.coerce.number().int().min(0).default(1024 ** 3),
  /** Bytes of output one unit of a program job may store (its canonical JSON); a larger output is that task's error. */
  UNIT_OUTPUT_BYTES: z.coerce.number().int().min(1024).default(4 * 1024 * 1024),
  /** Uploads are refused (507) while the data directory's disk has less free than this, so its database keeps room. */
  UPLOAD_DISK_FLOOR_BYTES: z.coerce.number().int().min(0).default(256 * 1024 ** 2),
  /** Bytes of uploads received into memory at once, server-wide; more wait (503, Retry-After). */
  UPLOAD_MEMORY_BYTES: z.coerce.number().int().positive().default(160 * 1024 * 1024),
  /** An upload slower than this over any 10 s is cut (408); 0: no minimum. */
  UPLOAD_MIN_BYTES_PER_SECOND: z.coerce.number().int().min(0).default(8 * 1024),
  /** A reduce or step of a consumer's program runs at most this long on the server, whatever the job's limit. */
  SERVER_PROGRAM_MAX_SECONDS: z.coerce.number().positive().max(3600).default(30),
  TASK_TIME_LIMIT_SECONDS: z.coerce.number().positive().max(3600).default(30),
  WASM_MEMORY_LIMIT_MB: z.coerce.number().int().min(1).max(4096).default(256),
  MAX_WS_MESSAGE_BYTES: z.coerce.number().int().positive().default(4 * 1024 * 1024),
  // Results a second a volunteer may send for tasks it does not hold (past 512 at once) before its socket is closed.
  STRAY_RESULTS_PER_SECOND: z.coerce.number().min(0).max(1e9).default(64),
  COMMIT_INTERVAL_MS: z.coerce.number().int().min(0).default(0),
  // How far V8's old generation may grow past what survived its last full collection (see server/index.ts); 0 leaves V8's own rule.
  HEAP_GROWTH_PERCENT: z.coerce.number().int().min(0).max(400).default(25),
  // Overload protection (see docs/performance.md). Sockets over the cap are refused at once.
  MAX_VOLUNTEER_CONNECTIONS: z.coerce.number().int().min(1).default(20_000),
  /** Connections of any kind open at once from one network address (an IPv4 address, an IPv6 /48); not counted behind a proxy. */
  CONNECTIONS_PER_ADDRESS: z.coerce.number().int().min(1).default(1024),
  /** Volunteer sockets open at once from one network address (an IPv4 address, an IPv6 /48). */
  VOLUNTEER_SOCKETS_PER_ADDRESS: z.coerce.number().int().min(1).default(500),
  /** Volunteer ids new to the server one network address may bring in an hour (and at once); known ids always connect. */
  NEW_VOLUNTEERS_PER_ADDRESS: z.coerce.number().int().min(1).default(1000),
  /** Job submissions per consumer: sustained rate per second, and the burst allowed above it. */
  SUBMISSIONS_PER_SECOND: z.coerce.number().positive().default(20),
  SUBMISSION_BURST: z.coerce.number().int().min(1).default(60),
  /**
   * Event-loop delay (ms) at which new requests and volunteer sockets are refused at the edge
   * (503, Retry-After) while health, metrics and the admin data still answer; 0 turns it off.
   */
  LOAD_SHED_DELAY_MS: z.coerce.number().min(0).max(10_000).default(40),
  /** API calls (tRPC, uploads) in progress past which more are refused at the edge (503); 0: no limits on calls in progress. */
  LOAD_SHED_MAX_REQUESTS: z.coerce.number().int().min(0).default(256),
  /** API calls in progress from one caller (API key, session or address) past which its next get 429. */
  LOAD_SHED_MAX_PER_CALLER: z.coerce.number().int().min(1).default(16),
  /** API calls a second from one caller (bursts of twice as many) past which its next get 429 at the edge; 0: no such limit. */
  LOAD_SHED_CALLER_RATE: z.coerce.number().min(0).default(50),
  /** Where `npm run bench` and `npm run stress` write their reports, and /admin/reports reads them. */
  REPORTS_DIR: z.string().default("./reports"),
  TABGRID_UI: z.enum(["on", "off"]).default("on"),
  // Cluster mode (docs/scaling.md): with REDIS_URL (and a PostgreSQL DATABASE_URL), nodes share
  // messages, rate budgets, presence and duties through Redis. NODE_ID names this node (default:
  // host, process id and a random part).
  REDIS_URL: z.preprocess((v) => (v === "" ? undefined : v), z.string().regex(/^rediss?:\/\/./, "must look like redis://host:6379").optional()),
  /** Cluster mode: a node that stops renewing its slices of work loses them to other nodes after this long. */
  SLICE_LEASE_SECONDS: z.coerce.number().min(1).max(300).default(10),
  /**
   * Cluster mode: how often a node whose volunteers are hungry looks for unclaimed work with no
   * news of it. News (a job submitted, a slice ended, the queue running low) claims at once.
   */
  SLICE_CLAIM_SECONDS: z.coerce.number().min(0.1).max(300).default(1),
  /** Starts every Redis key and channel of this cluster, so several clusters may share one Redis. */
  REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9:._-]{1,64}$/).default("tabgrid:"),
  NODE_ID: z.preprocess((v) => (v === "" ? undefined : v), z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "letters, digits, dots, dashes and underscores, at most 64").optional()),
  // Alerting (server/monitoring/alerts). "off" leaves rules, channels and history in place but
  // evaluates nothing (a second instance on the same database, or tests driving their own).
  TABGRID_ALERTS: z.enum(["on", "off"]).default("on"),
  // Email channels send through this relay: smtp://user:pass@host:587, or smtps://… for TLS.
  SMTP_URL: z.preprocess((v) => (v === "" ? undefined : v), z.string().regex(/^smtps?:\/\/[^/]/, "must look like smtp://user:pass@host:587").optional()),
  ALERT_EMAIL_FROM: z.string().min(3).default("tabgrid@localhost"),
  // At most this many notifications per minute to any one channel (in-app counts as one), so a storm can't flood it.
  ALERT_NOTIFY_PER_MINUTE: z.coerce.number().int().min(1).default(20),
  /** Seconds between dashboard samples (a fraction is allowed, for tests). */
  METRICS_INTERVAL_SECONDS: z.coerce.number().min(0.01).max(3600).default(5),
  /** If set, GET /api/metrics requires `Authorization: Bearer <token>`; unset (or empty), it is open. */
  METRICS_TOKEN: z.string().optional().transform((t) => t || undefined),
  // Watch an ad for credits (server/services/ads).
  ADS_DAILY_CAP_PER_ACCOUNT: z.coerce.number().int().min(0).default(10),
  ADS_DAILY_CAP_PER_IP: z.coerce.number().int().min(0).default(20),
  ADS_MAX_MEDIA_BYTES: z.coerce.number().int().positive().default(20 * 1024 * 1024),
  /** The default house ad created on a fresh install: its reward (credits) and length (seconds). */
  ADS_DEFAULT_REWARD_CREDITS: z.coerce.number().min(0).default(1),
  ADS_DEFAULT_SECONDS: z.coerce.number().int().min(1).max(600).default(15),
  /**
   * How many reverse proxies in front of the server append to X-Forwarded-For (0: none, the
   * socket's address is the client's). With N, the client is the Nth entry from the right.
   */
  TRUST_PROXY: z.string().regex(/^\d{1,2}$/, "a number of proxies (0: none)").default("0").transform(Number),
  NODE_ENV: z.enum(["development", "production", "test"]).default("production"),
});

function isDatabaseUrl(url: string): boolean {
  try {
    databaseKind(url);
    return true;
  } catch {
    return false;
  }
}

export type Env = z.infer<typeof schema> & { NEXTAUTH_SECRET: string };

export function parseEnv(source: Record<string, string | undefined> = process.env): Env {
  const parsed = schema.safeParse(source);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new Error(`Invalid environment:\n${lines.join("\n")}`);
  }
  const env = parsed.data;
  if (env.REDIS_URL) {
    if (databaseKind(env.DATABASE_URL) !== "postgres") {
      throw new Error("Invalid environment:\n  REDIS_URL: cluster mode needs a PostgreSQL DATABASE_URL that every node shares (a SQLite file belongs to one machine)");
    }
    if (!env.NEXTAUTH_SECRET) {
      throw new Error("Invalid environment:\n  NEXTAUTH_SECRET: required in cluster mode (REDIS_URL is set): every node must sign sessions with the same secret, or a session from one node is refused by the others");
    }
  }
  if (parseBlobStore(env.BLOB_STORE).kind === "s3") {
    if (Boolean(env.AWS_ACCESS_KEY_ID) !== Boolean(env.AWS_SECRET_ACCESS_KEY)) {
      throw new Error(`Invalid environment:\n  ${env.AWS_ACCESS_KEY_ID ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID"}: the S3 blob store needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (the AWS credential chain)`);
    }
  } else {
    // Blobs would silently stay on this machine's disk while the operator believes they are shared.
    for (const name of ["S3_ENDPOINT", "S3_FORCE_PATH_STYLE"] as const) {
      if (env[name] !== undefined) throw new Error(`Invalid environment:\n  ${name}: set, but BLOB_STORE is not an s3:// URL, so blobs would go to DATA_DIR/blobs; set BLOB_STORE=s3://bucket/prefix, or unset ${name}`);
    }
  }
  // A SQLite file's folder is created now, so a fresh checkout starts without setup.
  if (databaseKind(env.DATABASE_URL) === "sqlite") databaseFile(env.DATABASE_URL);
  fs.mkdirSync(env.DATA_DIR, { recursive: true });
  return {
    ...env,
    NEXTAUTH_SECRET: env.NEXTAUTH_SECRET ?? persistentSecret(env.DATA_DIR),
  };
}

/** A random secret kept in the data directory, so sessions survive restarts without setup. */
function persistentSecret(dataDir: string): string {
  const file = path.join(dataDir, ".auth-secret");
  try {
    return fs.readFileSync(file, "utf8").trim();
  } catch {
    const secret = crypto.randomBytes(32).toString("base64url");
    fs.writeFileSync(file, secret, { mode: 0o600 });
    return secret;
  }
}
