import type { ProgramTaskParams, UnitInput } from "../../worker/client/prepareTask";
import { runUnitOnServer } from "../../worker/sandbox/stepSandbox";
import type { BlobStore } from "../store/blobs";
import { compiledScript, wasmModule } from "../services/programs/scriptCache";
import { outputsAgree } from "../scheduler/compare";
import type { Comparator } from "../scheduler/types";

// Spot-checks of iterative programs' units, after the fact. A round's units are accepted alone
// (one replica each, merged robustly), and a round must not wait for a check: so a share of the
// accepted results (the scheduler draws them at the hosts' spot-check rates) is recomputed
// here, in the same sandbox as the program's step, at the lowest CPU priority. A result that
// differs from the server's own computation catches its host (banned, backtracked).

/**
 * Least tolerance of a JS audit. The server's QuickJS and the volunteers' V8 round some Math
 * functions differently in the last bit (exp, log): on the logistic-regression example 37% of
 * gradient components differ, by at most 1e-13 relative and 1e-16 absolute. Poisoning that
 * hides inside this tolerance moves nothing.
 */
export const JS_AUDIT_TOLERANCE = { relative: 1e-9, absolute: 1e-12 } as const;
/** QuickJS interprets: a unit takes it up to ~50x what it takes V8, so an audit gets that much more time. */
const JS_SLOWDOWN = 100;
const MAX_AUDIT_MS = 120_000;
/** Audits waiting beyond this are skipped (the host's next results are drawn again). */
const MAX_WAITING = 32;
/** Nor may one job's audits (a program slow on the server on purpose) hold the queue for the others. */
const MAX_WAITING_PER_JOB = 4;
/** Nor one account's, however many such jobs it runs. */
const MAX_WAITING_PER_OWNER = 8;

export type AuditVerdict = { agrees: boolean } | { skipped: string };

/** The comparator an audit judges by: the job's, widened for JS to what QuickJS and V8 may differ by. */
export function auditComparator(kind: "js" | "wasm", job: Comparator | undefined): Comparator {
  if (kind === "wasm") return job ?? { kind: "exact" };
  const c = job?.kind === "tolerance" ? job : { relative: 0, absolute: 0 };
  return { kind: "tolerance", relative: Math.max(c.relative, JS_AUDIT_TOLERANCE.relative), absolute: Math.max(c.absolute, JS_AUDIT_TOLERANCE.absolute) };
}

export class ProgramAudits {
  private waiting = 0;
  private readonly waitingFor = new Map<string, number>();
  /** Audits run to a verdict (for tests and metrics). */
  audits = 0;

  /** `cpuShare`: the most of a core's time audits may take (AUDIT_CPU_SHARE); 1 runs them back to back. */
  constructor(private readonly blobs: BlobStore, private readonly cpuShare = 1) {}

  /**
   * Recomputes a unit of job `job.id` of account `job.owner` (its scheduler params and the
   * unit's input) and compares `output` with it.
   */
  async check(job: { id: string; owner: string }, jobParams: unknown, comparator: Comparator | undefined, unitInput: unknown, output: unknown): Promise<AuditVerdict> {
    if (this.waiting >= MAX_WAITING) return { skipped: `${MAX_WAITING} audits are waiting already` };
    const keys = [`job ${job.id}`, `owner ${job.owner}`];
    if ((this.waitingFor.get(keys[0]!) ?? 0) >= MAX_WAITING_PER_JOB) return { skipped: `${MAX_WAITING_PER_JOB} audits of this job are waiting already` };
    if ((this.waitingFor.get(keys[1]!) ?? 0) >= MAX_WAITING_PER_OWNER) return { skipped: `${MAX_WAITING_PER_OWNER} audits of its owner's jobs are waiting already` };
    this.waiting++;
    for (const k of keys) this.waitingFor.set(k, (this.waitingFor.get(k) ?? 0) + 1);
    try {
      const p = jobParams as ProgramTaskParams;
      const spec = unitInput as UnitInput;
      const codeHash = p.program.kind === "js" ? p.program.script : p.program.hash;
      if (!codeHash) return { skipped: "the program has no compiled script" };
      const js = p.program.kind === "js";
      let code: string | Uint8Array;
      let input: unknown;
      let inputKind: "json" | "text" | "bytes" = "json";
      try {
        code = js ? await compiledScript(this.blobs, codeHash) : await wasmModule(this.blobs, codeHash);
        if ("value" in spec) input = spec.value;
        else {
          const bytes = await this.blobs.get(spec.blob);
          inputKind = spec.encoding;
          input = spec.encoding === "bytes" ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes.toString("utf8");
        }
      } catch (e) {
        return { skipped: `its code or input could not be read: ${(e as Error).message}` };
      }
      const timeMs = Math.min(MAX_AUDIT_MS, p.limits.timeMs * (js ? JS_SLOWDOWN : 4));
      let truth: unknown;
      try {
        truth = await runUnitOnServer({
          op: "run", kind: p.program.kind, hash: p.program.hash, code,
          input, inputKind, params: p.params, context: { ...p.context, ...spec.context }, timeMs, memoryMb: p.limits.memoryMb,
        }, this.cpuShare);
      } catch (e) {
        // The program failed or ran out of time here though it ran on the volunteer: no proof either way.
        return { skipped: (e as Error).message };
      }
      this.audits++;
      // As the volunteer's output was: through JSON, so undefined and NaN compare as they travelled.
      const canonical = JSON.parse(JSON.stringify(truth ?? null)) as unknown;
      return { agrees: outputsAgree(canonical, output, auditComparator(p.program.kind, comparator)) };
    } finally {
      this.waiting--;
      for (const k of keys) {
        const left = (this.waitingFor.get(k) ?? 1) - 1;
        if (left > 0) this.waitingFor.set(k, left);
        else this.waitingFor.delete(k);
      }
    }
  }
}
