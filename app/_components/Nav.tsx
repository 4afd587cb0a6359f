"use client";
import Link from "next/link";
import { usePathname } from "next/navigation";
import { signOut, useSession } from "next-auth/react";

const links = [
  { href: "/jobs", label: "Jobs" },
  { href: "/volunteer", label: "Volunteer" },
  { href: "/account", label: "Account" },
];

export function Nav() {
  const path = usePathname();
  const { data: session, status } = useSession();
  return (
    <header className="nav">
      <Link href="/" className="brand">
        <span className="logo">▦</span> Tabgrid
      </Link>
      <nav>
        {links.map((l) => (
          <Link key={l.href} href={l.href} className={path.startsWith(l.href) ? "active" : ""}>
            {l.label}
          </Link>
        ))}
      </nav>
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
