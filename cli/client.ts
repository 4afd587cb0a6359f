import { createTRPCClient, httpLink, retryLink, TRPCClientError } from "@trpc/client";
import type { AppRouter } from "../server/api/root";

const SHED_RETRY_MS = 250;

/**
 * A client of the server's API. `retryShedMs`: a call the server refused before carrying it out
 * (503 SERVICE_UNAVAILABLE: overloaded; 429 TOO_MANY_REQUESTS: this caller's limits), mutations
 * included, is tried again about 250 ms later, for up to that many ms in all (`onShedRetry`
 * hears of each such retry).
 */
export function apiClient(conn: { url: string; apiKey?: string; retryShedMs?: number; onShedRetry?: () => void }) {
  const retryShed = retryLink<AppRouter>({
    retry: ({ error, attempts }) => {
      const again = !!conn.retryShedMs && (error.data?.code === "SERVICE_UNAVAILABLE" || error.data?.code === "TOO_MANY_REQUESTS") && attempts * SHED_RETRY_MS < conn.retryShedMs;
      if (again) conn.onShedRetry?.();
      return again;
    },
    retryDelayMs: () => SHED_RETRY_MS * (0.8 + Math.random() * 0.4),
  });
  return createTRPCClient<AppRouter>({
    links: [
      retryShed,
      httpLink({
        url: `${conn.url}/api/trpc`,
        headers: () => (conn.apiKey ? { authorization: `Bearer ${conn.apiKey}` } : {}),
      }),
    ],
  });
}

/** A readable one-line reason for a failed call (server message, or why the server is unreachable). */
export function describeError(e: unknown, url: string): string {
  if (e instanceof TRPCClientError) {
    const cause = (e.cause as { cause?: { code?: string } } | undefined)?.cause;
    if (cause?.code === "ECONNREFUSED" || /fetch failed/.test(e.message)) return `cannot reach ${url} (is the server running?)`;
    return e.message;
  }
  return (e as Error).message ?? String(e);
}
