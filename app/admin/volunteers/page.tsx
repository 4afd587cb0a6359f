"use client";
import { useSession } from "next-auth/react";
import { useRequireSignIn } from "../_components/useRequireSignIn";
import { VolunteerTable } from "./VolunteerTable";

export default function AdminPage() {
  const ready = useRequireSignIn();
  const { data: session } = useSession();
  if (!ready) return null;
  if ((session?.user as { role?: string } | undefined)?.role !== "admin") {
    return <div className="card error">Admins only.</div>;
  }
  return <VolunteerTable />;
}
