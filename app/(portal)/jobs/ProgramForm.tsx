"use client";
import { useState, type FormEvent } from "react";
import { useRouter } from "next/navigation";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";

type Uploaded = { hash: string; name: string; size: number; kind?: string; exports?: string[]; hasReduce?: boolean };
type Mode = "json" | "range" | "lines" | "blocks";

/** Sends a file to /api/programs or /api/data (the session cookie authenticates it). */
async function upload(kind: "programs" | "data", file: File): Promise<Uploaded> {
  const res = await fetch(`/api/${kind}?name=${encodeURIComponent(file.name)}`, { method: "POST", body: file });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error ?? `Upload failed (HTTP ${res.status})`);
  return body;
}

export function ProgramForm() {
  const trpc = useTRPC();
  const router = useRouter();
  const queryClient = useQueryClient();
  const [program, setProgram] = useState<Uploaded | null>(null);
  const [data, setData] = useState<Uploaded | null>(null);
  const [mode, setMode] = useState<Mode>("range");
  const [f, setF] = useState({ items: "[1, 2, 3]", start: "0", end: "1000000", chunks: "8", blockBytes: "65536", params: "{}", timeLimit: "30", replicas: "2" });
  const [merge, setMerge] = useState<"concat" | "reduce">("concat");
  const [error, setError] = useState<string | null>(null);
  const submit = useMutation(
    trpc.jobs.submit.mutationOptions({
      onSuccess: async (job) => {
        await queryClient.invalidateQueries();
        router.push(`/jobs/${job.id}`);
      },
    }),
  );

  async function onFile(kind: "programs" | "data", file: File | undefined) {
    setError(null);
    if (!file) return;
    try {
      const up = await upload(kind, file);
      if (kind === "programs") {
        setProgram(up);
        setMerge(up.hasReduce ? "reduce" : "concat");
      } else setData(up);
    } catch (e) {
      setError((e as Error).message);
    }
  }

  function onSubmit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      const params = JSON.parse(f.params || "{}");
      const input =
        mode === "json" ? { mode, items: JSON.parse(f.items) }
        : mode === "range" ? { mode, start: Number(f.start), end: Number(f.end) }
        : mode === "lines" ? { mode, data: data?.hash ?? "" }
        : { mode, data: data?.hash ?? "", blockBytes: Number(f.blockBytes) };
      submit.mutate({
        kernel: "program", program: program!.hash, input: input as never, params, merge,
        chunks: mode === "range" || mode === "lines" ? Number(f.chunks) : undefined,
        timeLimitSeconds: Number(f.timeLimit), replication: { replicas: Number(f.replicas) },
      });
    } catch (err) {
      setError(`Check the JSON fields: ${(err as Error).message}`);
    }
  }

  const field = (k: keyof typeof f, label: string, props: Record<string, unknown> = {}) => (
    <label>
      {label}
      <input value={f[k]} onChange={(e) => setF({ ...f, [k]: e.target.value })} {...props} />
    </label>
  );
  return (
    <form className="card stack" onSubmit={onSubmit} aria-label="Run your own program">
      <h2>Run your own program</h2>
      <p className="hint">
        A JavaScript module exporting <code>run(input, ctx)</code> (and optionally <code>reduce</code>), or a WebAssembly module
        following the ABI in docs/writing-jobs.md. It runs sandboxed on volunteers: no network, a time limit, a memory limit.
      </p>
      <label>
        Program (.js or .wasm)
        <input type="file" name="program" accept=".js,.mjs,.wasm" onChange={(e) => onFile("programs", e.target.files?.[0])} />
      </label>
      {program && (
        <p className="hint" data-testid="program-info">
          {program.name}: {program.kind}, {program.size} bytes, exports {program.exports?.join(", ")} · <code>{program.hash.slice(0, 16)}…</code>
        </p>
      )}
      <label>
        Input
        <select value={mode} onChange={(e) => setMode(e.target.value as Mode)} name="mode">
          <option value="range">a numeric range split into chunks</option>
          <option value="json">a JSON array, one element per unit</option>
          <option value="lines">a text file split by lines</option>
          <option value="blocks">a file split into byte blocks</option>
        </select>
      </label>
      <div className="grid-fields">
        {mode === "json" && field("items", "JSON array")}
        {mode === "range" && (
          <>
            {field("start", "start", { type: "number" })}
            {field("end", "end", { type: "number" })}
          </>
        )}
        {(mode === "range" || mode === "lines") && field("chunks", "chunks", { type: "number", min: 1 })}
        {mode === "blocks" && field("blockBytes", "block bytes", { type: "number", min: 1 })}
        {field("timeLimit", "time limit (s)", { type: "number", min: 1 })}
        {field("replicas", "replicas", { type: "number", min: 1, max: 10 })}
      </div>
      {(mode === "lines" || mode === "blocks") && (
        <label>
          Data file
          <input type="file" name="data" onChange={(e) => onFile("data", e.target.files?.[0])} />
          {data && <span className="hint">{data.name}: {data.size} bytes</span>}
        </label>
      )}
      {field("params", "params (JSON, given to run and reduce as ctx.params)")}
      <label>
        Merge the outputs
        <select value={merge} onChange={(e) => setMerge(e.target.value as typeof merge)} name="merge">
          <option value="concat">concatenate (in unit order)</option>
          <option value="reduce" disabled={program ? !program.hasReduce : false}>with the program&apos;s reduce</option>
        </select>
      </label>
      {(error || submit.error) && <p className="error" role="alert">{error ?? submit.error?.message}</p>}
      <button type="submit" className="primary" disabled={!program || submit.isPending}>
        {submit.isPending ? "Submitting…" : "Submit program job"}
      </button>
    </form>
  );
}
