"use client";
import { createTRPCContext } from "@trpc/tanstack-react-query";
import { createTRPCClient, createWSClient, httpBatchLink, splitLink, wsLink } from "@trpc/client";
import type { AppRouter } from "../../server/api/root";
import { MAX_TRPC_BATCH } from "../../server/api/batch";

export const { TRPCProvider, useTRPC, useTRPCClient } = createTRPCContext<AppRouter>();

/** Queries and mutations over HTTP; subscriptions over tRPC's own WebSocket (cookies ride along). */
export function makeTrpcClient() {
  // Prerendering on the server never fetches (queries run in the browser), so no link is needed there.
  if (typeof window === "undefined") {
    return createTRPCClient<AppRouter>({ links: [httpBatchLink({ url: "http://localhost/api/trpc" })] });
  }
  const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/trpc-ws`;
  return createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === "subscription",
        true: wsLink({ client: createWSClient({ url: wsUrl, lazy: { enabled: true, closeMs: 10_000 } }) }),
        false: httpBatchLink({ url: "/api/trpc", maxItems: MAX_TRPC_BATCH }),
      }),
    ],
  });
}
