"use client";
import { useMemo, useState, type FormEvent } from "react";
import { useRouter } from "next/navigation";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";
import { EstimateCard, useEstimate } from "./EstimateCard";
import { useSubmissionKey } from "./submissionKey";

type Field = { type?: string; default?: unknown; minimum?: number; maximum?: number };

export function SubmitForm() {
  const trpc = useTRPC();
  const router = useRouter();
  const queryClient = useQueryClient();
  const kernels = useQuery(trpc.jobs.kernels.queryOptions());
  const [kernel, setKernel] = useState("mandelbrot");
  const [chunks, setChunks] = useState("16");
  const [values, setValues] = useState<Record<string, string>>({});
  const [replicas, setReplicas] = useState("2");
  const [adaptive, setAdaptive] = useState(true);
  const spec = kernels.data?.find((k) => k.name === kernel);
  const fields = Object.entries(spec?.params.properties ?? {}) as Array<[string, Field]>;

  const input = useMemo(() => {
    const params: Record<string, number> = {};
    for (const [name] of fields) {
      const raw = values[`${kernel}.${name}`];
      if (raw !== undefined && raw.trim() !== "") params[name] = Number(raw);
    }
    return { kernel, chunks: Number(chunks), params, replication: { replicas: Number(replicas), adaptive } };
  }, [kernel, chunks, values, fields, replicas, adaptive]);
  const estimate = useEstimate(spec ? input : null);
  const submissionKey = useSubmissionKey();
  const submit = useMutation(
    trpc.jobs.submit.mutationOptions({
      onSuccess: async (job) => {
        submissionKey.used();
        await queryClient.invalidateQueries();
        router.push(`/jobs/${job.id}`);
      },
    }),
  );

  function onSubmit(e: FormEvent) {
    e.preventDefault();
    submit.mutate({ ...input, idempotencyKey: submissionKey.keyFor(input) });
  }

  return (
    <form className="card stack" onSubmit={onSubmit} aria-label="Submit a job">
      <h2>New job</h2>
      <label>
        Kernel
        <select name="kernel" value={kernel} onChange={(e) => setKernel(e.target.value)}>
          {kernels.data?.map((k) => (
            <option key={k.name} value={k.name}>{k.title}</option>
          ))}
        </select>
      </label>
      {spec && <p className="hint">{spec.description}</p>}
      <div className="grid-fields">
        {fields.map(([name, f]) => (
          <label key={`${kernel}.${name}`}>
            {name}
            <input
              name={name} type="number" step={f.type === "integer" ? 1 : "any"} min={f.minimum} max={f.maximum}
              placeholder={f.default === undefined ? "random" : String(f.default)}
              value={values[`${kernel}.${name}`] ?? ""}
              onChange={(e) => setValues({ ...values, [`${kernel}.${name}`]: e.target.value })}
            />
          </label>
        ))}
        <label>
          chunks
          <input name="chunks" type="number" min={1} step={1} required value={chunks} onChange={(e) => setChunks(e.target.value)} />
        </label>
        <label>
          replicas
          <input name="replicas" type="number" min={1} max={10} step={1} required value={replicas} onChange={(e) => setReplicas(e.target.value)} />
        </label>
      </div>
      <label className="check">
        <input type="checkbox" checked={adaptive} onChange={(e) => setAdaptive(e.target.checked)} />
        Adaptive replication: hosts with a long record of valid results may compute a unit alone (with random spot checks)
      </label>
      <EstimateCard state={estimate} testId="estimate" />
      {submit.error && <p className="error" role="alert">{submit.error.message}</p>}
      <button type="submit" className="primary" disabled={submit.isPending || !!estimate.blocked}>
        {submit.isPending ? "Submitting…" : "Submit job"}
      </button>
    </form>
  );
}
