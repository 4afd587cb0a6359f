"use client";
import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Bar, BarChart, CartesianGrid, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { useTRPC } from "../_components/trpc";
import { creditCount, credits, plural, shortDay } from "../_components/format";

/** The signed-in user's team and their credits earned per day (30 days); their hosts are in Hosts.tsx. */
export function TeamAndHistory() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const mine = useQuery(trpc.teams.mine.queryOptions());
  const teams = useQuery(trpc.teams.list.queryOptions());
  const history = useQuery(trpc.leaderboard.me.queryOptions(undefined, { refetchInterval: 30_000 }));
  const [name, setName] = useState("");
  const refresh = () => queryClient.invalidateQueries();
  const create = useMutation(trpc.teams.create.mutationOptions({ onSuccess: () => (setName(""), refresh()) }));
  const join = useMutation(trpc.teams.join.mutationOptions({ onSuccess: refresh }));
  const leave = useMutation(trpc.teams.leave.mutationOptions({ onSuccess: refresh }));
  const error = create.error ?? join.error ?? leave.error;
  const rows = history.data?.days.map((d) => ({ day: shortDay(d.day), credits: d.credits / 1000 })) ?? [];
  return (
    <div className="two-col">
      <div className="card" data-testid="team-card">
        <h2>Team</h2>
        {mine.data ? (
          <p>
            You are in <strong>{mine.data.name}</strong>.{" "}
            <button className="link" onClick={() => leave.mutate()} disabled={leave.isPending}>Leave</button>
          </p>
        ) : (
          <>
            <form className="row" onSubmit={(e) => (e.preventDefault(), create.mutate({ name }))}>
              <input placeholder="New team name" value={name} onChange={(e) => setName(e.target.value)} maxLength={40} />
              <button type="submit" disabled={!name.trim() || create.isPending}>Create</button>
            </form>
            {!!teams.data?.length && (
              <form className="row" onSubmit={(e) => {
                e.preventDefault();
                const id = new FormData(e.currentTarget).get("team");
                if (typeof id === "string" && id) join.mutate({ id });
              }}>
                <select name="team" defaultValue="">
                  <option value="" disabled>Join a team…</option>
                  {teams.data.map((t) => <option key={t.id} value={t.id}>{t.name} ({t.members})</option>)}
                </select>
                <button type="submit" disabled={join.isPending}>Join</button>
              </form>
            )}
          </>
        )}
        {error && <p className="error">{error.message}</p>}
      </div>
      <div className="card" data-testid="history-card">
        <h2>Credits earned, last 30 days</h2>
        <p className="hint">{history.data ? `${creditCount(history.data.total)} in all (UTC days)` : "…"}</p>
        <div style={{ width: "100%", height: 220 }}>
          <ResponsiveContainer>
            <BarChart data={rows}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="day" fontSize={11} />
              <YAxis fontSize={11} />
              <Tooltip formatter={(v) => [plural(Number(v), "credit"), "Earned"]} />
              <Bar dataKey="credits" fill="#2563eb" />
            </BarChart>
          </ResponsiveContainer>
        </div>
      </div>
    </div>
  );
}
