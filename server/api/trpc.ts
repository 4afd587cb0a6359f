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
    return createContextInner(deps, id.user, id.error, clientIp(req, deps.env.TRUST_PROXY === "1"));
  };
}

const t = initTRPC.context<Context>().create({
  errorFormatter({ shape, error }) {
    const zod = error.cause instanceof ZodError ? error.cause : null;
    return {
      ...shape,
      // A readable first problem for forms and the CLI, plus the full list.
      message: zod ? zod.issues.map((i) => `${i.path.join(".") || "input"}: ${i.message}`).join("; ") : shape.message,
      data: { ...shape.data, zodIssues: zod?.issues ?? null },
    };
  },
});

/** Maps services' user-facing errors to tRPC codes; anything else stays an internal error. */
const userErrors = t.middleware(async ({ next }) => {
  const res = await next();
  if (!res.ok && res.error.cause instanceof UserError) {
    const e = res.error.cause;
    const code = e.code === "PAYMENT_REQUIRED" ? "PAYMENT_REQUIRED" : e.code;
    throw new TRPCError({ code, message: e.message, cause: e });
  }
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

export const adminProcedure = protectedProcedure.use(({ ctx, next }) => {
  if (ctx.user.role !== "admin") throw new TRPCError({ code: "FORBIDDEN", message: "Admins only." });
  return next();
});
