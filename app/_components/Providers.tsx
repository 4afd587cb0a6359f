"use client";
import { useState, type ReactNode } from "react";
import { SessionProvider } from "next-auth/react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { TRPCProvider, makeTrpcClient } from "./trpc";
import { VolunteerProvider } from "./VolunteerProvider";

export function Providers({ children }: { children: ReactNode }) {
  const [queryClient] = useState(() => new QueryClient({ defaultOptions: { queries: { staleTime: 2000, retry: 1 } } }));
  const [trpcClient] = useState(() => makeTrpcClient());
  return (
    <SessionProvider>
      <QueryClientProvider client={queryClient}>
        <TRPCProvider trpcClient={trpcClient} queryClient={queryClient}>
          <VolunteerProvider>{children}</VolunteerProvider>
        </TRPCProvider>
      </QueryClientProvider>
    </SessionProvider>
  );
}
