"use client";
import { useState, type KeyboardEvent, type MouseEvent } from "react";
import Link from "next/link";
import { usePathname } from "next/navigation";
import { signOut, useSession } from "next-auth/react";
import { useQuery } from "@tanstack/react-query";
import { useVolunteer } from "./VolunteerProvider";
import { useTRPC } from "./trpc";
import { plural } from "./format";

const links = [
  { href: "/jobs", label: "Jobs" },
  { href: "/volunteer", label: "Volunteer" },
  { href: "/leaderboard", label: "Leaderboard" },
  { href: "/account", label: "Account" },
];

/**
 * The dark bar on every page. Below the phone breakpoint (globals.css) the links and the
 * account collapse behind a Menu button; the menu is open only on the page it was opened on,
 * so following any link closes it.
 */
export function Nav() {
  const path = usePathname();
  const { data: session, status } = useSession();
  const volunteer = useVolunteer();
  const trpc = useTRPC();
  const isAdmin = (session?.user as { role?: string } | undefined)?.role === "admin";
  const unread = useQuery({ ...trpc.alerts.unreadCount.queryOptions(), enabled: isAdmin, refetchInterval: 15_000 });
  const showBell = isAdmin && !!unread.data?.count;
  const [openOn, setOpenOn] = useState<string | null>(null);
  const open = openOn === path;
  // A link to the page already shown does not change the path: close on any link click.
  const onMenuClick = (e: MouseEvent) => {
    if ((e.target as HTMLElement).closest("a")) setOpenOn(null);
  };
  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === "Escape" && open) {
      setOpenOn(null);
      document.getElementById("menu-button")?.focus();
    }
  };
  return (
    <header className="nav" onKeyDown={onKeyDown}>
      <Link href="/" className="brand">
        <span className="logo">▦</span> Tabgrid
      </Link>
      {(volunteer.running || showBell) && (
        <div className="status">
          {volunteer.running && (
            <Link href="/volunteer" className="computing" title="This tab is volunteering">
              ● computing · {plural(volunteer.snap?.tasksDone ?? 0, "task")}
            </Link>
          )}
          {showBell && (
            <Link href="/admin/alerts" className="bell" title="Unread alert notifications">
              ⚠ {plural(unread.data!.count, "alert")}
            </Link>
          )}
        </div>
      )}
      <button
        type="button" id="menu-button" className="menu-button" aria-expanded={open} aria-controls="site-menu"
        onClick={() => setOpenOn(open ? null : path)}
      >
        <span aria-hidden="true">{open ? "✕" : "☰"}</span> Menu
      </button>
      <div id="site-menu" className={`menu${open ? " open" : ""}`} onClick={onMenuClick}>
        <nav aria-label="Main">
          {[...links, ...(isAdmin ? [{ href: "/admin", label: "Admin" }] : [])].map((l) => (
            <Link key={l.href} href={l.href} className={path.startsWith(l.href) ? "active" : ""} aria-current={path.startsWith(l.href) ? "page" : undefined}>
              {l.label}
            </Link>
          ))}
        </nav>
        <div className="who">
          {status === "authenticated" ? (
            <>
              <span className="email">{session.user?.email}</span>
              <button className="link" onClick={() => signOut({ callbackUrl: "/" })}>Sign out</button>
            </>
          ) : status === "unauthenticated" ? (
            <Link href="/signin">Sign in</Link>
          ) : null}
        </div>
      </div>
    </header>
  );
}
