"use client";
import { useEffect } from "react";
import { useSession } from "next-auth/react";
import { usePathname, useRouter } from "next/navigation";

/** Sends signed-out visitors to the sign-in page and back here afterwards. */
export function useRequireSignIn() {
  const { status } = useSession();
  const router = useRouter();
  const path = usePathname();
  useEffect(() => {
    if (status === "unauthenticated") router.replace(`/signin?callbackUrl=${encodeURIComponent(path)}`);
  }, [status, router, path]);
  return status === "authenticated";
}
