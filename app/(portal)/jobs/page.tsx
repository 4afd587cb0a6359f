"use client";
import { SubmitForm } from "./SubmitForm";
import { JobList } from "./JobList";
import { ProgramForm } from "./ProgramForm";
import { CalcBox } from "./CalcBox";
import { FilesCard } from "./FilesCard";
import { useRequireSignIn } from "../../_components/useRequireSignIn";

export default function JobsPage() {
  const ready = useRequireSignIn();
  if (!ready) return null;
  return (
    <div className="two-col">
      <div className="stack">
        <SubmitForm />
        <ProgramForm />
        <FilesCard />
        <CalcBox />
      </div>
      <JobList />
    </div>
  );
}
