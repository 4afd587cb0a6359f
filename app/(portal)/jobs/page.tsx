"use client";
import { SubmitForm } from "./SubmitForm";
import { JobList } from "./JobList";
import { useRequireSignIn } from "../../_components/useRequireSignIn";

export default function JobsPage() {
  const ready = useRequireSignIn();
  if (!ready) return null;
  return (
    <div className="two-col">
      <SubmitForm />
      <JobList />
    </div>
  );
}
