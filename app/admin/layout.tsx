"use client";
import type { ReactNode } from "react";
import Link from "next/link";
import { usePathname } from "next/navigation";
import { useSession } from "next-auth/react";
import { useRequireSignIn } from "../_components/useRequireSignIn";

const tabs = [
  { href: "/admin", label: "Dashboard" },
  { href: "/admin/jobs", label: "Jobs" },
  { href: "/admin/volunteers", label: "Volunteers" },
  { href: "/admin/users", label: "Users" },
  { href: "/admin/alerts", label: "Alerts" },
  { href: "/admin/pricing", label: "Pricing" },
  { href: "/admin/ads", label: "Ads" },
  { href: "/admin/reports", label: "Reports" },
];

export default function AdminLayout({ children }: { children: ReactNode }) {
  const ready = useRequireSignIn();
  const { data: session } = useSession();
  const path = usePathname();
  if (!ready) return null;
  if ((session?.user as { role?: string } | undefined)?.role !== "admin") {
    return <div className="card error" data-testid="admin-refused">Admins only. Sign in with an admin account to see this page.</div>;
  }
  return (
    <div className="stack">
      <nav className="subnav">
        {tabs.map((t) => (
          <Link key={t.href} href={t.href} className={path === t.href ? "active" : ""}>{t.label}</Link>
        ))}
      </nav>
      {children}
    </div>
  );
}
