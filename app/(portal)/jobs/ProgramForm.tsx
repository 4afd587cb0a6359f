"use client";
import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { useRouter } from "next/navigation";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";
import { EstimateCard, useDebounced, useEstimate } from "./EstimateCard";
import { MIN_CPU_SECONDS, proposedCpuSeconds, seconds } from "./estimateText";
import { firstUnitInput, trialRun, type TrialOutcome } from "./trialRun";
import { useSubmissionKey } from "./submissionKey";
import type { CsvSummary } from "../../../server/services/programs/csvTables";

type Uploaded = {
  hash: string; name: string; size: number; kind?: string; scriptHash?: string | null; exports?: string[]; hasReduce?: boolean;
  /** A data file sent as CSV: how the server read it. */
  csv?: CsvSummary;
};
type Mode = "json" | "range" | "lines" | "blocks" | "csv";
type Merge = "concat" | "reduce" | "mean" | "median" | "trimmed-mean";

/** Sends a file to /api/programs or /api/data (the session cookie authenticates it); `asCsv`: read it as a CSV table. */
async function upload(kind: "programs" | "data", file: File, asCsv = false): Promise<Uploaded> {
  const res = await fetch(`/api/${kind}?name=${encodeURIComponent(file.name)}${asCsv ? "&as=csv" : ""}`, { method: "POST", body: file });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error ?? `Upload failed (HTTP ${res.status})`);
  return body;
}

type Trial = { state: "idle" } | { state: "running" } | ({ state: "done" } & TrialOutcome);
type Fields = {
  items: string; start: string; end: string; chunks: string; blockBytes: string; params: string; timeLimit: string; replicas: string;
  /** KiB one unit's output may take (the job's outputLimitBytes). */
  outputLimit: string;
  /** An iterative program's (one that exports step): empty for a one-shot job. */
  rounds: string; trim: string; roundShare: string;
};

/**
 * The submission the form describes, or why it cannot describe one yet. `estimate` is what
 * `jobs.estimate` is asked: a JSON array is counted rather than sent (a long one would not
 * fit in a query's URL), as a range of as many units, which the server prices the same.
 */
function describe(program: Uploaded | null, mode: Mode, f: Fields, data: Uploaded | null, cpuSeconds: string, merge: Merge) {
  const cpu = Number(cpuSeconds);
  if (!(cpu >= MIN_CPU_SECONDS && cpu <= 3600)) return { problem: `CPU-seconds per unit is a number from ${MIN_CPU_SECONDS} to 3600.` };
  // Empty: the server's default (1 MiB, or less where the server allows less).
  const outputKiB = f.outputLimit.trim() === "" ? undefined : Number(f.outputLimit);
  if (outputKiB !== undefined && !(outputKiB > 0)) return { problem: "The output limit per unit is a number of KiB above 0." };
  let params: unknown;
  try {
    params = JSON.parse(f.params || "{}");
  } catch (err) {
    return { problem: `Check the params JSON: ${(err as Error).message}` };
  }
  let input: Record<string, unknown>;
  let counted: Record<string, unknown> | undefined;
  if (mode === "json") {
    let items: unknown;
    try {
      items = JSON.parse(f.items);
    } catch (err) {
      return { problem: `Check the JSON array: ${(err as Error).message}` };
    }
    if (!Array.isArray(items) || items.length === 0) return { problem: "The JSON input must be an array with at least one element (one per unit)." };
    input = { mode, items };
    counted = { kernel: "program", input: { mode: "range", start: 0, end: items.length }, chunks: items.length };
  } else if (mode === "range") input = { mode, start: Number(f.start), end: Number(f.end) };
  else if (!data) return { problem: "Choose the data file to see the estimate." };
  else input = mode === "blocks" ? { mode, data: data.hash, blockBytes: Number(f.blockBytes) } : { mode, data: data.hash };
  // Rounds, for a program that exports step; the server checks the figures and says what is wrong.
  const iterative = !!program?.exports?.includes("step") && f.rounds.trim() !== "";
  const rounds = iterative
    ? {
      rounds: Number(f.rounds),
      ...(f.roundShare.trim() ? { roundShare: Number(f.roundShare) } : {}),
    }
    : {};
  const common = {
    kernel: "program", program: program?.hash, params, merge, timeLimitSeconds: Number(f.timeLimit),
    ...(outputKiB !== undefined ? { outputLimitBytes: Math.max(16, Math.round(outputKiB * 1024)) } : {}),
    replication: { replicas: Number(f.replicas) }, cpuSecondsPerUnit: cpu, ...rounds,
    ...(merge === "trimmed-mean" && f.trim.trim() ? { trim: Number(f.trim) } : {}),
  };
  const chunks = mode === "range" || mode === "lines" || mode === "csv" ? Number(f.chunks) : undefined;
  const submit = { ...common, input, chunks };
  return { submit, estimate: counted ? { ...common, ...counted } : submit };
}

export function ProgramForm() {
  const trpc = useTRPC();
  const router = useRouter();
  const queryClient = useQueryClient();
  const [program, setProgram] = useState<Uploaded | null>(null);
  const [data, setData] = useState<Uploaded | null>(null);
  const [dataFile, setDataFile] = useState<File | null>(null);
  const [mode, setMode] = useState<Mode>("range");
  const [f, setF] = useState<Fields>({
    items: "[1, 2, 3]", start: "0", end: "1000000", chunks: "8", blockBytes: "65536", params: "{}", timeLimit: "30", replicas: "2", outputLimit: "",
    rounds: "", trim: "", roundShare: "",
  });
  const [merge, setMerge] = useState<Merge>("concat");
  const [cpuSeconds, setCpuSeconds] = useState("1");
  // Once the user types a figure of their own, trial runs no longer overwrite it.
  const cpuTouched = useRef(false);
  const [trial, setTrial] = useState<Trial>({ state: "idle" });
  const [error, setError] = useState<string | null>(null);
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
  const described = useMemo(() => describe(program, mode, f, data, cpuSeconds, merge), [program, mode, f, data, cpuSeconds, merge]);
  const estimate = useEstimate((described.estimate ?? null) as Parameters<typeof useEstimate>[0]);

  // A trial run of the first unit whenever the program or that unit changes.
  const latest = useRef({ mode, f, dataFile });
  latest.current = { mode, f, dataFile };
  const unitKey = mode === "json" ? f.items : mode === "range" ? `${f.start}:${f.end}:${f.chunks}` : mode === "lines" || mode === "csv" ? f.chunks : f.blockBytes;
  const trialKey = useDebounced(program ? JSON.stringify([program.hash, mode, unitKey, f.params, dataFile?.name, dataFile?.size]) : null, 400);
  useEffect(() => {
    if (!trialKey || !program) return;
    let cancelled = false;
    setTrial({ state: "running" });
    (async () => {
      const { mode, f, dataFile } = latest.current;
      let outcome: TrialOutcome;
      try {
        const unit = await firstUnitInput(mode, f, dataFile);
        outcome = await trialRun(program, unit, JSON.parse(f.params || "{}"));
      } catch (e) {
        outcome = { ok: false, reason: (e as Error).message };
      }
      if (cancelled) return;
      setTrial({ state: "done", ...outcome });
      const measured = outcome.ok ? outcome.cpuSeconds : outcome.atLeast;
      if (measured !== undefined && !cpuTouched.current) setCpuSeconds(String(proposedCpuSeconds(measured)));
    })();
    return () => {
      cancelled = true;
    };
  }, [trialKey, program]);

  async function onFile(kind: "programs" | "data", file: File | undefined) {
    setError(null);
    if (!file) return;
    try {
      const up = await upload(kind, file, kind === "data" && mode === "csv");
      void queryClient.invalidateQueries({ queryKey: trpc.files.list.queryKey() });
      if (kind === "programs") {
        setProgram(up);
        setMerge(up.hasReduce ? "reduce" : "concat");
        // A program that exports step runs in rounds: offer a figure to start from.
        if (up.exports?.includes("step")) setF((old) => ({ ...old, rounds: old.rounds || "20" }));
      } else {
        setData(up);
        setDataFile(file);
      }
    } catch (e) {
      setError((e as Error).message);
    }
  }

  function onSubmit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    if (!described.submit) return setError(described.problem ?? "Check the form.");
    submit.mutate({ ...described.submit, idempotencyKey: submissionKey.keyFor(described.submit) } as never);
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
        A JavaScript module exporting <code>run(input, ctx)</code> (and optionally <code>reduce</code>, or <code>step</code> to run in
        rounds), or a WebAssembly module following the ABI in docs/writing-jobs.md. It runs sandboxed on volunteers: no network, a
        time limit, a memory limit.
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
          <option value="csv">a numeric CSV cut into shards</option>
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
        {mode === "csv" && field("chunks", "shards", { type: "number", min: 1 })}
        {program?.exports?.includes("step") && (
          <>
            {field("rounds", "rounds (at most)", { type: "number", min: 1, name: "rounds" })}
            {field("roundShare", "round share (optional, 0–1)", { type: "number", min: 0, max: 1, step: "any", name: "roundShare", placeholder: "1" })}
          </>
        )}
        {merge === "trimmed-mean" && field("trim", "trim (share dropped at each end)", { type: "number", min: 0, max: 0.49, step: "any", name: "trim", placeholder: "0.1" })}
        {mode === "blocks" && field("blockBytes", "block bytes", { type: "number", min: 1 })}
        {field("timeLimit", "time limit (s)", { type: "number", min: 1 })}
        {field("outputLimit", "output limit per unit (KiB)", { type: "number", min: 1, step: "any", name: "outputLimit", placeholder: "1024" })}
        {field("replicas", "replicas", { type: "number", min: 1, max: 10 })}
        <label>
          CPU-seconds per unit
          <input
            name="cpuSeconds" type="number" min={MIN_CPU_SECONDS} max={3600} step="any" required value={cpuSeconds}
            onChange={(e) => {
              cpuTouched.current = true;
              setCpuSeconds(e.target.value);
            }}
          />
        </label>
      </div>
      <p className="hint" data-testid="trial" data-cpu-seconds={trial.state === "done" && trial.ok ? trial.cpuSeconds : undefined}>
        {trialText(trial, !!program)}
      </p>
      {(mode === "lines" || mode === "blocks" || mode === "csv") && (
        <label>
          Data file
          <input type="file" name="data" onChange={(e) => onFile("data", e.target.files?.[0])} />
          {data && <span className="hint">{data.name}: {data.size} bytes{data.csv && "rows" in data.csv ? `, ${data.csv.rows} rows × ${data.csv.columns} columns` : ""}</span>}
          {mode === "csv" && data?.csv && "error" in data.csv && <span className="error" data-testid="csv-error">Not usable as CSV input: {data.csv.error}</span>}
        </label>
      )}
      {field("params", "params (JSON, given to run, reduce and step as ctx.params)")}
      <label>
        Merge the outputs
        <select value={merge} onChange={(e) => setMerge(e.target.value as Merge)} name="merge">
          <option value="concat">concatenate (in unit order)</option>
          <option value="reduce" disabled={program ? !program.hasReduce : false}>with the program&apos;s reduce</option>
          <option value="mean">mean per coordinate (arrays of numbers)</option>
          <option value="median">median per coordinate (outvotes a poisoned share)</option>
          <option value="trimmed-mean">trimmed mean per coordinate (drops the extremes)</option>
        </select>
      </label>
      {described.problem ? <p className="error">{described.problem}</p> : <EstimateCard state={estimate} testId="program-estimate" />}
      {(error || submit.error) && <p className="error" role="alert">{error ?? submit.error?.message}</p>}
      <button type="submit" className="primary" disabled={!program || submit.isPending || !!described.problem || !!estimate.blocked}>
        {submit.isPending ? "Submitting…" : "Submit program job"}
      </button>
    </form>
  );
}

/** What the trial run found, in the words the form shows under the CPU-seconds field. */
function trialText(trial: Trial, uploaded: boolean): string {
  const priced = "Units are priced on this figure, in reference CPU-seconds (a second on a machine of benchmark score 1).";
  if (!uploaded) return `Upload the program to time it on the first unit in your browser. ${priced}`;
  if (trial.state === "idle" || trial.state === "running") return "Timing a trial run of the first unit on your machine…";
  if (trial.ok) {
    return `Measured on your machine: ${seconds(trial.ms / 1000)} for the first unit (${seconds(trial.cpuSeconds)} of reference CPU at your benchmark score of ${trial.benchmark.toFixed(2)}). ${priced}`;
  }
  const floor = trial.atLeast === undefined ? "" : ` It takes at least ${seconds(trial.atLeast)} of reference CPU.`;
  return `No trial run: ${trial.reason.replace(/\.$/, "")}.${floor} Set the CPU-seconds per unit yourself. ${priced}`;
}
