"use client";
import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "../_components/trpc";
import { credits } from "../_components/format";

const WINDOWS = [
  { key: "today", label: "Today" },
  { key: "week", label: "Last 7 days" },
  { key: "all", label: "All time" },
] as const;

export default function LeaderboardPage() {
  const trpc = useTRPC();
  const [window, setWindow] = useState<(typeof WINDOWS)[number]["key"]>("week");
  const [by, setBy] = useState<"credits" | "validated">("credits");
  const board = useQuery(trpc.leaderboard.get.queryOptions({ window, by }, { refetchInterval: 30_000 }));
  const sortHeader = (key: "credits" | "validated", label: string) => (
    <th className="num">
      <button className="link" onClick={() => setBy(key)}>{label}{by === key ? " ▼" : ""}</button>
    </th>
  );
  return (
    <div className="stack">
      <nav className="subnav">
        {WINDOWS.map((w) => (
          <a key={w.key} href="#" className={window === w.key ? "active" : ""} onClick={(e) => (e.preventDefault(), setWindow(w.key))}>{w.label}</a>
        ))}
      </nav>
      {board.error && <div className="card error">{board.error.message}</div>}
      <div className="two-col">
        <div className="card">
          <h2>Volunteers</h2>
          <table data-testid="leaderboard-volunteers">
            <thead><tr><th>#</th><th>Host</th><th>Team</th>{sortHeader("credits", "Credits")}{sortHeader("validated", "Validated")}</tr></thead>
            <tbody>
              {board.data?.volunteers.map((v) => (
                <tr key={`${v.rank}-${v.name}`}><td>{v.rank}</td><td>{v.name}</td><td>{v.team?.name ?? ""}</td><td className="num">{credits(v.credits)}</td><td className="num">{v.validated}</td></tr>
              ))}
            </tbody>
          </table>
          {board.data && !board.data.volunteers.length && <p className="hint">No validated work in this window yet.</p>}
        </div>
        <div className="card">
          <h2>Teams</h2>
          <table data-testid="leaderboard-teams">
            <thead><tr><th>#</th><th>Team</th><th className="num">Members</th>{sortHeader("credits", "Credits")}{sortHeader("validated", "Validated")}</tr></thead>
            <tbody>
              {board.data?.teams.map((t) => (
                <tr key={t.id}><td>{t.rank}</td><td>{t.name}</td><td className="num">{t.members}</td><td className="num">{credits(t.credits)}</td><td className="num">{t.validated}</td></tr>
              ))}
            </tbody>
          </table>
          {board.data && !board.data.teams.length && <p className="hint">No team has validated work in this window yet.</p>}
        </div>
      </div>
      <p className="hint">Credits are what validated results were paid; “today” starts at 00:00 UTC. Hosts show the name their owner gave them, never an email.</p>
    </div>
  );
}
