"use client";
import { useState, type FormEvent } from "react";
import { useMutation } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";

/** A distributed calculator: the expression goes to the least loaded volunteer and back. */
export function CalcBox() {
  const trpc = useTRPC();
  const [expression, setExpression] = useState("2*(3+4)/5");
  const evaluate = useMutation(trpc.calc.evaluate.mutationOptions());

  function onSubmit(e: FormEvent) {
    e.preventDefault();
    if (expression.trim()) evaluate.mutate({ expression });
  }

  const r = evaluate.data;
  return (
    <form className="card stack" onSubmit={onSubmit} aria-label="Calculator">
      <h2>Calculator</h2>
      <p className="hint">An interactive task: one volunteer evaluates it and answers in milliseconds. + − * / % ^ and parentheses.</p>
      <div className="row">
        <input
          name="expression" aria-label="expression" value={expression} maxLength={1000} style={{ flex: 1 }}
          onChange={(e) => setExpression(e.target.value)} spellCheck={false} autoComplete="off"
        />
        <button className="primary" type="submit" disabled={evaluate.isPending}>{evaluate.isPending ? "…" : "="}</button>
      </div>
      {evaluate.error ? (
        <p className="error" data-testid="calc-error">{evaluate.error.message}</p>
      ) : r ? (
        <div className="estimate" data-testid="calc-result">
          <strong style={{ fontSize: "1.3rem" }}>{r.value}</strong>
          <p className="hint">
            computed by volunteer <code>{r.volunteerId.slice(0, 10)}</code> in {r.ms < 10 ? r.ms.toFixed(1) : Math.round(r.ms)} ms
          </p>
          {r.ops.length > 0 && <p className="hint">{r.ops.join(" · ")}</p>}
        </div>
      ) : null}
    </form>
  );
}
