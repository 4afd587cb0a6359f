"use client";
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";
import { duration, when } from "../../_components/format";
import { formatValue, thresholdUnit } from "../../../server/monitoring/alerts/format";
import { SERIES } from "../../../server/monitoring/series";

type Rule = NonNullable<ReturnType<typeof useRules>["data"]>[number];
const useRules = () => {
  const trpc = useTRPC();
  return useQuery({ ...trpc.alerts.rules.queryOptions(), refetchInterval: 3000 });
};

/** One rule's editable numbers, saved together. */
function RuleEditor({ rule, onDone }: { rule: Rule; onDone: () => void }) {
  const trpc = useTRPC();
  const [f, setF] = useState({
    threshold: String(rule.threshold), hysteresis: String(rule.hysteresis), forSeconds: String(rule.forSeconds), repeatMinutes: String(rule.repeatMinutes),
  });
  const update = useMutation(trpc.alerts.updateRule.mutationOptions({ onSuccess: onDone }));
  function save(e: FormEvent) {
    e.preventDefault();
    update.mutate({
      id: rule.id, threshold: Number(f.threshold), hysteresis: Number(f.hysteresis), forSeconds: Number(f.forSeconds), repeatMinutes: Number(f.repeatMinutes),
    });
  }
  const unit = thresholdUnit(rule.metric);
  const fields = [
    { key: "threshold", label: `Threshold${unit ? ` (${unit})` : ""}`, shows: formatValue(rule.metric, Number(f.threshold)) },
    { key: "hysteresis", label: `Hysteresis${unit ? ` (${unit})` : ""}`, shows: `±${formatValue(rule.metric, Number(f.hysteresis), { suffix: false })}` },
    { key: "forSeconds", label: "For (seconds)", shows: duration(Number(f.forSeconds)) },
    { key: "repeatMinutes", label: "Repeat every (minutes)", shows: duration(Number(f.repeatMinutes) * 60) },
  ] as const;
  return (
    <form className="row rule-editor" onSubmit={save} aria-label={`edit ${rule.name}`}>
      {fields.map(({ key, label, shows }) => (
        <label key={key}>
          {label}
          <input type="number" step="any" value={f[key]} onChange={(e) => setF({ ...f, [key]: e.target.value })} style={{ width: 130 }} autoFocus={key === "threshold"} />
          {/* What the raw number means, when that says more than the number itself ("0.1" → "10% of the data volume"). */}
          {f[key] !== "" && Number.isFinite(Number(f[key])) && shows.replace(/^±/, "").split(" ")[0] !== f[key] && <span className="hint">= {shows}</span>}
        </label>
      ))}
      <div className="row">
        <button type="submit" className="primary" disabled={update.isPending}>Save</button>
        <button type="button" onClick={onDone}>Cancel</button>
      </div>
      {update.error && <span className="error">{update.error.message}</span>}
    </form>
  );
}

export function RulesCard() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const rules = useRules();
  const [editing, setEditing] = useState<string | null>(null);
  const refresh = () => queryClient.invalidateQueries({ queryKey: trpc.alerts.pathKey() });
  const silence = useMutation(trpc.alerts.silence.mutationOptions({ onSuccess: refresh }));
  const unsilence = useMutation(trpc.alerts.unsilence.mutationOptions({ onSuccess: refresh }));
  const enable = useMutation(trpc.alerts.enableRule.mutationOptions({ onSuccess: refresh }));
  const remove = useMutation(trpc.alerts.deleteRule.mutationOptions({ onSuccess: refresh }));
  const error = silence.error ?? unsilence.error ?? enable.error ?? remove.error;
  const editingRule = rules.data?.find((r) => r.id === editing);

  return (
    <div className="card stack">
      <h2>Alert rules</h2>
      <p className="hint">A rule fires when its metric stays past the threshold for the given time, and resolves once it is back past the threshold by the hysteresis. Firing alerts remind every “repeat” minutes.</p>
      {error && <p className="error">{error.message}</p>}
      <table>
        <thead>
          <tr><th>Rule</th><th>Condition</th><th>State</th><th className="num">Value</th><th>Severity</th><th /></tr>
        </thead>
        <tbody>
          {rules.data?.map((r) => (
            <tr key={r.id} data-testid={`rule-${r.name}`}>
              <td style={{ minWidth: 200 }}>
                <strong>{r.name}</strong>
                {r.description ? <div className="hint">{r.description}</div> : null}
              </td>
              <td className="nowrap">
                <code>{r.metric} {r.comparison} {formatValue(r.metric, r.threshold)}</code>
                <div className="hint">for {r.forSeconds} s · hysteresis ±{formatValue(r.metric, r.hysteresis, { suffix: false })} · repeats every {r.repeatMinutes} min</div>
              </td>
              <td>
                <span className={`badge ${r.state === "firing" ? "failed" : r.state === "pending" ? "cancelled" : "completed"}`}>
                  {r.enabled ? r.state ?? "inactive" : "disabled"}
                </span>
                {r.silenced && <div className="hint">silenced until {when(r.silencedUntil!)}</div>}
              </td>
              <td className="num" data-testid="rule-value">{r.lastValue === null ? "—" : formatValue(r.metric, r.lastValue)}</td>
              <td>{r.severity}</td>
              <td className="nowrap">
                <button className="link" onClick={() => setEditing(editing === r.id ? null : r.id)} aria-expanded={editing === r.id}>Edit</button>{" · "}
                {r.silenced ? (
                  <button className="link" onClick={() => unsilence.mutate({ id: r.id })}>Unsilence</button>
                ) : (
                  <button className="link" onClick={() => silence.mutate({ id: r.id, minutes: 60 })}>Silence 1 h</button>
                )}{" · "}
                <button className="link" onClick={() => enable.mutate({ id: r.id, enabled: !r.enabled })}>{r.enabled ? "Disable" : "Enable"}</button>{" · "}
                <button className="link" onClick={() => confirm(`Delete the rule "${r.name}"?`) && remove.mutate({ id: r.id })}>Delete</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {editingRule && (
        // Below the table rather than in its row, so that it is in view on a phone too.
        <div className="estimate stack" key={editingRule.id}>
          <strong>Edit “{editingRule.name}”</strong>
          <RuleEditor rule={editingRule} onDone={() => (setEditing(null), refresh())} />
        </div>
      )}
      <NewRuleForm onCreated={refresh} />
    </div>
  );
}

function NewRuleForm({ onCreated }: { onCreated: () => void }) {
  const trpc = useTRPC();
  const [f, setF] = useState({ name: "", metric: "queue_depth", comparison: ">" as ">" | "<", threshold: "1000", forSeconds: "60" });
  const create = useMutation(trpc.alerts.createRule.mutationOptions({ onSuccess: () => (setF({ ...f, name: "" }), onCreated()) }));
  function submit(e: FormEvent) {
    e.preventDefault();
    create.mutate({ name: f.name, metric: f.metric as never, comparison: f.comparison, threshold: Number(f.threshold), forSeconds: Number(f.forSeconds) });
  }
  const unit = thresholdUnit(f.metric);
  return (
    <form className="row rule-editor" onSubmit={submit} aria-label="new rule">
      <label>Name <input value={f.name} onChange={(e) => setF({ ...f, name: e.target.value })} required placeholder="e.g. long queue" /></label>
      <label>
        Metric
        <input value={f.metric} onChange={(e) => setF({ ...f, metric: e.target.value })} style={{ width: 190 }} list="alert-metrics" />
        <datalist id="alert-metrics">
          {Object.entries(SERIES).map(([k, text]) => <option key={k} value={k}>{text}</option>)}
        </datalist>
      </label>
      <label>
        Fires when
        <select value={f.comparison} onChange={(e) => setF({ ...f, comparison: e.target.value as ">" | "<" })}>
          <option value=">">above</option>
          <option value="<">below</option>
        </select>
      </label>
      <label>
        Threshold{unit ? ` (${unit})` : ""}
        <input type="number" step="any" value={f.threshold} onChange={(e) => setF({ ...f, threshold: e.target.value })} style={{ width: 130 }} />
      </label>
      <label>
        For (seconds)
        <input type="number" value={f.forSeconds} onChange={(e) => setF({ ...f, forSeconds: e.target.value })} style={{ width: 110 }} />
      </label>
      <button type="submit" disabled={create.isPending}>Add rule</button>
      {create.error && <span className="error">{create.error.message}</span>}
    </form>
  );
}
