"use client";
import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";
import { credits, when } from "../../_components/format";

/** Accounts with their balances; an admin grants credits to one (out of the system's grants, with a memo in its ledger). */
export default function AdminUsersPage() {
  const trpc = useTRPC();
  const [search, setSearch] = useState("");
  const [granting, setGranting] = useState<string | null>(null);
  const users = useQuery({ ...trpc.admin.users.queryOptions({ search, limit: 200 }), refetchInterval: 5000 });
  return (
    <div className="card stack">
      <div className="row spread">
        <h2>Users</h2>
        <input placeholder="Search email or id" value={search} onChange={(e) => setSearch(e.target.value)} aria-label="search users" />
      </div>
      <table>
        <thead>
          <tr><th>Email</th><th>Role</th><th className="num">Balance</th><th>Joined</th><th /></tr>
        </thead>
        <tbody>
          {users.data?.map((u) => (
            <UserRow key={u.id} user={u} granting={granting === u.id} onGrant={() => setGranting(u.id)} onDone={() => setGranting(null)} />
          ))}
        </tbody>
      </table>
      {users.data?.length === 0 && <p className="hint">No accounts match.</p>}
    </div>
  );
}

function UserRow(props: {
  user: { id: string; email: string; role: string; balance: number; createdAt: string };
  granting: boolean;
  onGrant: () => void;
  onDone: () => void;
}) {
  const { user } = props;
  return (
    <>
      <tr data-testid="user-row">
        <td>{user.email}</td>
        <td>{user.role}</td>
        <td className="num" data-testid="user-balance">{credits(user.balance)}</td>
        <td className="nowrap">{when(user.createdAt)}</td>
        <td>{!props.granting && <button type="button" onClick={props.onGrant}>Grant credits</button>}</td>
      </tr>
      {props.granting && (
        <tr>
          <td colSpan={5}><GrantForm userId={user.id} email={user.email} onDone={props.onDone} /></td>
        </tr>
      )}
    </>
  );
}

function GrantForm(props: { userId: string; email: string; onDone: () => void }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [amount, setAmount] = useState("");
  const [memo, setMemo] = useState("");
  const grant = useMutation(trpc.admin.grant.mutationOptions({
    onSuccess: () => {
      void queryClient.invalidateQueries();
      props.onDone();
    },
  }));
  return (
    <form
      className="row"
      aria-label={`grant credits to ${props.email}`}
      onSubmit={(e) => {
        e.preventDefault();
        grant.mutate({ userId: props.userId, credits: Number(amount), memo });
      }}
    >
      <input type="number" step="any" min="0.001" placeholder="credits" value={amount} onChange={(e) => setAmount(e.target.value)} aria-label="credits" required />
      <input placeholder="what it is for (shown in their ledger)" value={memo} onChange={(e) => setMemo(e.target.value)} aria-label="memo" maxLength={200} required />
      <button type="submit" className="primary" disabled={!amount || !memo.trim() || grant.isPending}>Grant</button>
      <button type="button" onClick={props.onDone}>Cancel</button>
      {grant.error && <p className="error" role="alert">{grant.error.message}</p>}
    </form>
  );
}
