import type http from "node:http";
import { performance as nodePerformance } from "node:perf_hooks";
import { TRPC_ERROR_CODES_BY_KEY } from "@trpc/server/rpc";
import { RateLimiter } from "../services/calc/rateLimit";
import { addressKey } from "../coordinator/network";
import { credentialOf, isVouched } from "./vouchedCallers";

// Shedding at the edge. When the event loop falls behind, every request queues behind every
// other, health probes included, until clients time out (`npm run stress` saw health p99 at
// 7.5 s past the knee). So new work is refused before its body is read, its caller
// authenticated or its database touched: a 503 with Retry-After, which costs microseconds. What
// an operator needs to see the overload (health, metrics, the admin data) is never refused.

/** How often the loop is sampled: a timer that fires late by X ms means the loop was X ms behind. */
const TICK_MS = 10;
/** Each tick's lateness counts a third, the past two thirds (toobusy's dampening). */
const WEIGHT = 1 / 3;
/** A loop busy less than this share of the last second is not overloaded, however late a tick came. */
const BUSY_SHARE = 0.8;
/** The window over which the loop's busy share is taken. */
const UTILIZATION_WINDOW_MS = 1000;

/**
 * Event-loop delay from a timer's lateness, smoothed over the last few ticks, and the share of
 * the last second the loop was busy (Node's event-loop utilization). A loop that is behind
 * and busy is overloaded; one long task on an idle loop (a cold page render, a GC pause) is
 * late once but not busy, and must not refuse what queued behind it.
 */
export class LoopDelay {
  private smoothed = 0;
  private lastTick = performance.now();
  private readonly timer: NodeJS.Timeout;
  /** Cumulative utilization readings of the last second (and one before it), oldest first. */
  private readonly readings: Array<{ t: number; active: number; idle: number }> = [];

  constructor() {
    this.timer = setInterval(() => {
      const now = performance.now();
      this.smoothed = this.blend(now);
      this.lastTick = now;
      const { active, idle } = nodePerformance.eventLoopUtilization();
      this.readings.push({ t: now, active, idle });
      while (this.readings.length > 2 && this.readings[1]!.t <= now - UTILIZATION_WINDOW_MS) this.readings.shift();
    }, TICK_MS);
    this.timer.unref();
  }

  /** The share (0–1) of about the last second the loop spent running callbacks. */
  utilization(): number {
    const first = this.readings[0];
    const last = this.readings.at(-1);
    if (!first || !last || last === first) return 0;
    const total = last.active + last.idle - (first.active + first.idle);
    return total > 0 ? (last.active - first.active) / total : 0;
  }

  private blend(now: number) {
    const late = Math.max(0, now - this.lastTick - TICK_MS);
    return this.smoothed * (1 - WEIGHT) + late * WEIGHT;
  }

  /** The smoothed delay as of now: a task running long at this moment counts as a tick that came this late. */
  current(): number {
    return Math.max(this.smoothed, this.blend(performance.now()));
  }

  stop() {
    clearInterval(this.timer);
  }
}

/** What a `jobs.estimate` call costs of its caller's rate (LoadGateOptions.procedureCost): ten a second at 50 calls a second. */
export const ESTIMATE_COST = 5;

/** The procedures a tRPC path names: several in a batch ("monitoring.history,alerts.list"); none off tRPC. */
function procedures(pathname: string): string[] {
  if (!pathname.startsWith("/api/trpc/")) return [];
  const raw = pathname.slice("/api/trpc/".length);
  try {
    return decodeURIComponent(raw).split(",");
  } catch {
    return raw.split(","); // malformed escapes name no procedure; tRPC answers them
  }
}

/**
 * Requests that stay answered under any load: what watches the server and what runs it.
 * `operator` tells the admin pages' procedures (adminProcedure) from the rest.
 */
function exempt(pathname: string, procs: string[], operator: (procedure: string) => boolean): boolean {
  if (pathname === "/api/health" || pathname === "/api/metrics") return true;
  if (pathname.startsWith("/api/trpc/")) return procs.every(operator);
  // Sign-in (so an admin can reach the dashboard), Next's static files and the admin pages.
  return pathname.startsWith("/api/auth/") || pathname.startsWith("/_next/static/") || pathname === "/admin" || pathname.startsWith("/admin/");
}

export interface LoadGate {
  /**
   * True when the request was refused (the response is written). An API call is counted in
   * progress from here, except a tRPC call with a body: see admit().
   */
  shed(req: http.IncomingMessage, res: http.ServerResponse, pathname: string): boolean;
  /**
   * For a tRPC call with a body, once the body is read: counts it in progress, or refuses it
   * (true, the response written) when its caller, its procedure or the server has its fill.
   */
  admit(req: http.IncomingMessage, res: http.ServerResponse, pathname: string): boolean;
  /** True when a new volunteer socket should be refused now. */
  busy(): boolean;
  stop(): void;
}

/**
 * Who is calling, as far as the edge can tell without a database lookup: an API key or a
 * session identify() has verified before, else the network address (addressKey). Keyed by the
 * credential as sent, a client that sent a new made-up session cookie with each call was a new
 * caller each time, with a fresh rate and its own 16 calls in progress.
 */
function caller(req: http.IncomingMessage, ipOf: (req: http.IncomingMessage) => string): string {
  const credential = credentialOf(req);
  return credential && isVouched(credential) ? credential : `address ${addressKey(ipOf(req))}`;
}

/**
 * API calls counted against the in-flight limits: the ones that reach the database. Uploads
 * are not: each has its own bounds while it is received (two per account, the memory they
 * may hold, a minimum rate: server/http/uploads.ts), and one trickled in would hold its place
 * here as long as it kept the minimum rate.
 */
const counted = (req: http.IncomingMessage, pathname: string) =>
  pathname.startsWith("/api/trpc/") || (pathname.startsWith("/api/") && req.method !== "GET" && req.method !== "HEAD" && !UPLOADS.has(pathname));
const UPLOADS = new Set(["/api/programs", "/api/data"]);

/**
 * A tRPC call whose body is still to come is counted only once it has come (admit()): a body
 * trickled in held its places (the server's 256, its procedure's, its caller's) for as long as
 * Node waits for a request, five minutes, and 300 such connections kept every API call
 * answered 503.
 */
export const hasBody = (req: http.IncomingMessage) => req.method !== "GET" && req.method !== "HEAD";

export interface LoadGateOptions {
  /** Smoothed event-loop delay (ms) past which requests start to be refused; 0: never. */
  delayMs: number;
  /** API calls in progress (tRPC, uploads) past which more are refused; 0: no limits on calls in progress. */
  maxRequests: number;
  /**
   * API calls in progress from one caller (one API key, session or address) past which its
   * next are refused with 429: one client flooding cannot take every place from the others.
   */
  maxPerCaller?: number;
  /** Counts a refusal (tabgrid_load_shed_total{reason="overloaded"}). */
  onShed: () => void;
  /** Whether a tRPC procedure is an operator's, never refused. */
  operator: (procedure: string) => boolean;
  /**
   * Calls of one procedure in progress past which more of it are refused here, before the caller
   * is authenticated: what would be refused later anyway costs no database lookup.
   */
  perProcedure?: Record<string, number>;
  /**
   * API calls a second from one caller (twice as many at once) past which its next get 429
   * before they are authenticated, each call of a tRPC batch counted; 0 or absent: no such
   * limit. The limit on calls in progress does not bound a caller whose calls are each refused
   * at once (a client retrying in a tight loop): each would still cost its authentication.
   */
  perCallerRate?: number;
  /**
   * What one call of a procedure costs of its caller's rate, where it is more than one: a call
   * that costs the loop many times an ordinary one (a public estimate of 10,000 units, ~25 ms)
   * let one caller within 50 calls a second keep a core busy.
   */
  procedureCost?: Record<string, number>;
  /** The client's address (TRUST_PROXY): a caller without a verified credential is its network. */
  ipOf?: (req: http.IncomingMessage) => string;
  random?: () => number;
  /** The loop's measures (default: a LoopDelay of the gate's own; tests give fixed ones). */
  loop?: Pick<LoopDelay, "utilization" | "current" | "stop">;
}

/**
 * The gate for one server. Two signals, because each misses what the other sees:
 * - the event loop's delay: the CPU is behind;
 * - API calls in progress: calls waiting on the database cost no loop time, but each one that
 *   is admitted makes the next ones wait; while the server works through them, new connections
 *   queue in the kernel's accept queue, unseen by the loop (`npm run stress` found health
 *   probes waiting 20 s there with the loop never more than 300 ms behind).
 */
export function createLoadGate(opts: LoadGateOptions): LoadGate {
  const random = opts.random ?? Math.random;
  const ipOf = opts.ipOf ?? ((req: http.IncomingMessage) => req.socket.remoteAddress ?? "?");
  const costOf = (procs: string[]) => Math.max(1, procs.reduce((sum, p) => sum + (opts.procedureCost?.[p] ?? 1), 0));
  const loop = opts.delayMs > 0 ? (opts.loop ?? new LoopDelay()) : undefined;
  // How far past the threshold the loop is (0 at it, 1 at twice it), while it is also busy.
  const pressure = () => (loop && loop.utilization() >= BUSY_SHARE ? Math.max(0, (loop.current() - opts.delayMs) / opts.delayMs) : 0);
  // Refused with a probability that grows with the overshoot: none at the threshold, all at
  // twice it. Admission eases off as the loop falls behind instead of flapping on and off.
  const busy = () => random() < pressure();
  // Calls in progress: in all ("*"), by caller and by procedure; entries are removed at 0.
  const inFlight = new Map<string, number>();
  const add = (key: string, n: number) => {
    const v = (inFlight.get(key) ?? 0) + n;
    if (v) inFlight.set(key, v);
    else inFlight.delete(key);
  };
  const perProcedure = new Map(Object.entries(opts.perProcedure ?? {}));
  const rate = opts.perCallerRate ? new RateLimiter(opts.perCallerRate, 2 * opts.perCallerRate) : undefined;
  const limitOf = (key: string) =>
    key === "*" ? opts.maxRequests : key.startsWith("caller ") ? (opts.maxPerCaller ?? Infinity) : perProcedure.get(key.slice("procedure ".length))!;
  // Counts a call in progress until its response closes, or refuses it if a limit is reached.
  const hold = (req: http.IncomingMessage, res: http.ServerResponse, pathname: string, procs: string[], who: string): boolean => {
    const keys = ["*", who, ...procs.filter((p) => perProcedure.has(p)).map((p) => `procedure ${p}`)];
    const full = keys.find((k) => (inFlight.get(k) ?? 0) >= limitOf(k));
    if (full) return refuse(req, res, pathname, procs, full.startsWith("caller ") ? 429 : 503, opts.onShed);
    for (const k of keys) add(k, 1);
    res.once("close", () => keys.forEach((k) => add(k, -1)));
    return false;
  };
  return {
    busy,
    shed(req, res, pathname) {
      const procs = procedures(pathname);
      if (exempt(pathname, procs, opts.operator)) return false;
      const limited = opts.maxRequests > 0 && counted(req, pathname);
      const who = limited ? `caller ${caller(req, ipOf)}` : undefined;
      // Callers with calls in progress are shed first: from the threshold on, all at twice it.
      // A caller with none (a consumer submitting now and then beside a flood) is shed only
      // past twice the threshold, all at three times it.
      const lone = who !== undefined && !inFlight.has(who);
      if (random() < pressure() - (lone ? 1 : 0)) return refuse(req, res, pathname, procs, 503, opts.onShed);
      if (!limited) return false;
      if (rate && !rate.take(who!, costOf(procs))) return refuse(req, res, pathname, procs, 429, opts.onShed, MESSAGES.rate);
      if (pathname.startsWith("/api/trpc/") && hasBody(req)) return false;
      return hold(req, res, pathname, procs, who!);
    },
    admit(req, res, pathname) {
      if (!(opts.maxRequests > 0) || !counted(req, pathname)) return false;
      return hold(req, res, pathname, procedures(pathname), `caller ${caller(req, ipOf)}`);
    },
    stop: () => loop?.stop(),
  };
}

const MESSAGES = {
  503: "The server is overloaded right now. Try again in a moment.",
  429: "Too many of your calls are in progress at once. Wait for them, then try again.",
  rate: "Too many calls from you in the last second. Slow down, then try again.",
};

/**
 * 503 (the server is behind) or 429 (this caller has too much in progress) with Retry-After;
 * on a tRPC path, in tRPC's error shape (one per call of a batch) so its clients read the code.
 * Counts the refusal; always true (the request was answered).
 */
function refuse(req: http.IncomingMessage, res: http.ServerResponse, pathname: string, procs: string[], status: 503 | 429, count: () => void, message: string = MESSAGES[status]): true {
  count();
  // The body is left unread; Node discards it after the answer, so the connection can be reused.
  if (!pathname.startsWith("/api/")) {
    res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "retry-after": "1", "cache-control": "no-store" }).end(`${message}\n`);
    return true;
  }
  if (pathname.startsWith("/api/trpc/")) return answerTrpcError(req, res, procs, status, status === 503 ? "SERVICE_UNAVAILABLE" : "TOO_MANY_REQUESTS", message, { "retry-after": "1" });
  res.writeHead(status, { "content-type": "application/json", "retry-after": "1", "cache-control": "no-store" }).end(JSON.stringify({ error: message }));
  return true;
}

/** An error for each call of a tRPC request (one per call of a batch), in tRPC's own shape, so its clients read the code. */
export function answerTrpcError(
  req: http.IncomingMessage, res: http.ServerResponse, procs: string[], status: number, code: keyof typeof TRPC_ERROR_CODES_BY_KEY, message: string,
  headers: Record<string, string> = {},
): true {
  const error = (path: string | undefined) => ({
    error: { message, code: TRPC_ERROR_CODES_BY_KEY[code], data: { code, httpStatus: status, path, zodIssues: null } },
  });
  const body = /[?&]batch=1(&|$)/.test(req.url ?? "") ? procs.map(error) : error(procs[0]);
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers }).end(JSON.stringify(body));
  return true;
}

export { procedures as trpcProcedures };
