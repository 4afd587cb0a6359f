"use client";
import { use } from "react";
import Link from "next/link";
import { JobView } from "./JobView";
import { useRequireSignIn } from "../../../_components/useRequireSignIn";

export default function JobPage({ params }: { params: Promise<{ id: string }> }) {
  const { id } = use(params);
  const ready = useRequireSignIn();
  if (!ready) return null;
  return (
    <>
      <p><Link href="/jobs">← All jobs</Link></p>
      <JobView id={id} />
    </>
  );
}
