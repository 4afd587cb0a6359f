"use client";
import Link from "next/link";
import { usePathname } from "next/navigation";
import { signOut, useSession } from "next-auth/react";
import { useQuery } from "@tanstack/react-query";
import { useVolunteer } from "./VolunteerProvider";
import { useTRPC } from "./trpc";

const links = [
  { href: "/jobs", label: "Jobs" },
  { href: "/volunteer", label: "Volunteer" },
  { href: "/leaderboard", label: "Leaderboard" },
  { href: "/account", label: "Account" },
];

export function Nav() {
  const path = usePathname();
  const { data: session, status } = useSession();
  const volunteer = useVolunteer();
  const trpc = useTRPC();
  const isAdmin = (session?.user as { role?: string } | undefined)?.role === "admin";
  const unread = useQuery({ ...trpc.alerts.unreadCount.queryOptions(), enabled: isAdmin, refetchInterval: 15_000 });
  return (
    <header className="nav">
      <Link href="/" className="brand">
        <span className="logo">▦</span> Tabgrid
      </Link>
      <nav>
        {[...links, ...(isAdmin ? [{ href: "/admin", label: "Admin" }] : [])].map((l) => (
          <Link key={l.href} href={l.href} className={path.startsWith(l.href) ? "active" : ""}>
            {l.label}
          </Link>
        ))}
      </nav>
      {volunteer.running && (
        <Link href="/volunteer" className="computing" title="This tab is volunteering">
          ● computing · {volunteer.snap?.tasksDone ?? 0} tasks
        </Link>
      )}
      {isAdmin && !!unread.data?.count && (
        <Link href="/admin/alerts" className="bell" title="Unread alert notifications">
          ⚠ {unread.data.count} alert{unread.data.count > 1 ? "s" : ""}
        </Link>
      )}
      <div className="who">
        {status === "authenticated" ? (
          <>
            <span>{session.user?.email}</span>
            <button className="link" onClick={() => signOut({ callbackUrl: "/" })}>Sign out</button>
          </>
        ) : status === "unauthenticated" ? (
          <Link href="/signin">Sign in</Link>
        ) : null}
      </div>
    </header>
  );
}
