import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";
import { WebSocket } from "ws";
import { initTRPC, TRPCError } from "@trpc/server";
import { ZodError } from "zod";
import type { AppDeps } from "../services/deps";
import { identify, type SessionUser } from "../auth/session";
import { holdKeySocket } from "../auth/keySockets";
import { UserError } from "../services/errors";

export interface Context {
  deps: AppDeps;
  user: SessionUser | null;
  /** Set when the caller presented credentials that are wrong (e.g. a revoked API key). */
  authError?: string;
  /** The caller's IP address (for per-IP limits such as the daily ad cap). */
  ip: string;
  /** An HTTP call's Idempotency-Key header (jobs.submit); never a WebSocket's, whose headers are the connection's. */
  idempotencyKey?: string;
}

/** The one context builder; tests call it directly with a user of their choosing. */
export function createContextInner(deps: AppDeps, user: SessionUser | null, authError?: string, ip = "local"): Context {
  return { deps, user, authError, ip };
}

/**
 * The client's address. Behind `trustedProxies` reverse proxies (TRUST_PROXY), each appended
 * the address it got the request from to X-Forwarded-For, so the client is the entry that many
 * from the right; whatever stands left of it the client wrote itself. (The left-most entry was
 * taken once: behind nginx's `$proxy_add_x_forwarded_for` a client named a new address with each
 * request, and every per-address limit fell: starter grants, sign-in attempts.) With fewer
 * entries than proxies, the left-most; without a usable one, the socket's.
 */
export function clientIp(req: IncomingMessage, trustedProxies: number): string {
  if (trustedProxies > 0) {
    const xff = req.headers["x-forwarded-for"];
    const hops = (Array.isArray(xff) ? xff.join(",") : (xff ?? "")).split(",").map((h) => h.trim()).filter(Boolean);
    const hop = unmapped(hops[Math.max(0, hops.length - trustedProxies)] ?? "");
    if (isIP(hop)) return hop;
  }
  return unmapped(req.socket?.remoteAddress ?? "unknown");
}

/** An IPv4 address as itself, not IPv6-mapped (`::ffff:1.2.3.4`). */
const unmapped = (address: string) => (address.startsWith("::ffff:") ? address.slice(7) : address);

/** HTTP and WebSocket wrappers: both read the caller from the request (cookie or bearer key). */
export function contextFromRequest(deps: AppDeps) {
  return async ({ req, res }: { req: IncomingMessage; res?: unknown }) => {
    const id = await identify(deps.db, req, deps.env.NEXTAUTH_SECRET);
    // A WebSocket (tRPC's passes its socket as `res`) signed with a key is closed if the key is revoked.
    if (id.keyId && req.headers.upgrade && res instanceof WebSocket) holdKeySocket(id.keyId, res);
    const ctx = createContextInner(deps, id.user, id.error, clientIp(req, deps.env.TRUST_PROXY));
    const key = req.headers["idempotency-key"];
    if (typeof key === "string" && !req.headers.upgrade) ctx.idempotencyKey = key;
    return ctx;
  };
}

/**
 * Development mode (`npm run dev`, NODE_ENV=development) only: error answers carry their
 * stack, and internal errors their real message. Everywhere else (`npm start`, `npm run
 * serve`, tests) an answer names no file, query or stack; tRPC's own default would be
 * development whenever NODE_ENV is not exactly "production", i.e. also when it is unset.
 */
export const exposeErrorDetails = process.env.NODE_ENV === "development";

/** What a client is told about an error that is not its own (the server logs the real one). */
export const INTERNAL_ERROR_MESSAGE = "Internal server error";

export interface ProcedureMeta {
  /** An operator's call (the admin pages' data and actions): answered even when the server sheds load. */
  operator?: boolean;
}

const t = initTRPC.context<Context>().meta<ProcedureMeta>().create({
  isDev: exposeErrorDetails,
  errorFormatter({ shape, error }) {
    const zod = error.cause instanceof ZodError ? error.cause : null;
    const internal = error.code === "INTERNAL_SERVER_ERROR";
    return {
      ...shape,
      // A readable first problem for forms and the CLI, plus the full list. An internal
      // error's message may name files, SQL or a stack: the server logs it (onError in
      // server/app.ts); the client gets a generic one.
      message: zod
        ? zod.issues.map((i) => `${i.path.join(".") || "input"}: ${i.message}`).join("; ")
        : internal && !exposeErrorDetails ? INTERNAL_ERROR_MESSAGE : shape.message,
      // shape.data.stack is there only when isDev.
      data: { ...shape.data, zodIssues: zod?.issues ?? null },
    };
  },
});

/** A service's user-facing error as the tRPC error it stands for; anything else unchanged. */
export function asTRPCError(e: unknown): unknown {
  return e instanceof UserError ? new TRPCError({ code: e.code, message: e.message, cause: e }) : e;
}

const isAsyncIterable = (x: unknown): x is AsyncIterable<unknown> =>
  typeof x === "object" && x !== null && typeof (x as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === "function";

/** An async iterable whose failures are mapped like the procedures' (see userErrors). */
async function* mapErrors<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* source;
  } catch (e) {
    throw asTRPCError(e);
  }
}

/**
 * Maps services' user-facing errors to tRPC codes; anything else stays an internal error.
 * A subscription's generator runs after the middlewares have returned, so its iterable is
 * wrapped: a UserError thrown while it runs (jobs.watch of someone else's job: NOT_FOUND)
 * keeps its code instead of becoming an internal error.
 */
const userErrors = t.middleware(async ({ type, next }) => {
  const res = await next();
  if (!res.ok) {
    if (res.error.cause instanceof UserError) throw asTRPCError(res.error.cause);
    return res;
  }
  if (type === "subscription" && isAsyncIterable(res.data)) return { ...res, data: mapErrors(res.data) };
  return res;
});

const rejectBadCredentials = t.middleware(({ ctx, next }) => {
  if (ctx.authError) throw new TRPCError({ code: "UNAUTHORIZED", message: ctx.authError });
  return next();
});

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;

export const publicProcedure = t.procedure.use(rejectBadCredentials).use(userErrors);

export const protectedProcedure = publicProcedure.use(({ ctx, next }) => {
  if (!ctx.user) throw new TRPCError({ code: "UNAUTHORIZED", message: "Sign in (or pass an API key) to do this." });
  return next({ ctx: { ...ctx, user: ctx.user } });
});

export const adminProcedure = protectedProcedure.meta({ operator: true }).use(({ ctx, next }) => {
  if (ctx.user.role !== "admin") throw new TRPCError({ code: "FORBIDDEN", message: "Admins only." });
  return next();
});
