import { createTRPCClient, httpLink, TRPCClientError } from "@trpc/client";
import type { AppRouter } from "../server/api/root";

export function apiClient(conn: { url: string; apiKey?: string }) {
  return createTRPCClient<AppRouter>({
    links: [
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
