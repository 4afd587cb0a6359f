"use client";
import type { InteractiveLogEntry } from "../../worker/interactive/volunteer";
import { clockTime, plural } from "../_components/format";

/** The interactive tasks (calculator) this tab answered, newest first. */
export function CalcLog({ entries }: { entries: InteractiveLogEntry[] }) {
  if (!entries.length) return null;
  const recent = entries.slice(-15).reverse();
  return (
    <div className="card" data-testid="calc-log">
      <h2>Calculations answered</h2>
      <p className="hint">{plural(entries.length, "interactive task")} computed by this tab{entries.length >= 200 ? " (last 200 kept)" : ""}.</p>
      <table>
        <thead><tr><th>Time</th><th>Expression</th><th>Result</th><th>Operations</th></tr></thead>
        <tbody>
          {recent.map((e, i) => (
            <tr key={`${e.at}-${i}`}>
              <td className="nowrap">{clockTime(e.at)}</td>
              <td><code>{e.expression}</code></td>
              <td className={e.error ? "neg" : "num"}>{e.error ?? e.value}</td>
              <td className="hint">{e.ops.join(", ") || "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
