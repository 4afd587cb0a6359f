import type { IncomingMessage } from "node:http";
import { initTRPC, TRPCError } from "@trpc/server";
import { ZodError } from "zod";
import type { AppDeps } from "../services/deps";
import { identify, type SessionUser } from "../auth/session";
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

/** The client's address: the first X-Forwarded-For hop when TRUST_PROXY=1, else the socket's. */
export function clientIp(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const xff = req.headers["x-forwarded-for"];
    const first = (Array.isArray(xff) ? xff[0] : xff)?.split(",")[0]?.trim();
    if (first) return first;
  }
  const addr = req.socket?.remoteAddress ?? "unknown";
  return addr.startsWith("::ffff:") ? addr.slice(7) : addr;
}

/** HTTP and WebSocket wrappers: both read the caller from the request (cookie or bearer key). */
export function contextFromRequest(deps: AppDeps) {
  return async ({ req }: { req: IncomingMessage }) => {
    const id = await identify(deps.db, req, deps.env.NEXTAUTH_SECRET);
    const ctx = createContextInner(deps, id.user, id.error, clientIp(req, deps.env.TRUST_PROXY === "1"));
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
