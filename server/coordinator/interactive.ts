import { z } from "zod";
import type { InteractiveResult, LoadReport, ServerMessage } from "../../worker/protocol/messages";
import type { InteractiveKernel } from "../../worker/interactive";

// Interactive tasks: one small task, answered by one volunteer in milliseconds, outside the
// scheduler's queues and windows. The volunteer is chosen by the power of two choices: two
// distinct random volunteers, the less loaded one wins. Load is the volunteer's own report
// plus what this server has handed it since (leased tasks, interactive tasks in flight), so
// a burst of requests spreads out instead of herding onto whoever last reported the minimum.

export const INTERACTIVE_TIMEOUT_MS = 3000;
/** How long a connection that let a task time out is passed over (20 silent sockets made calc time out for everyone). */
export const SILENT_PASS_MS = 60_000;
/** Volunteers asked per request: the first choice, then one retry elsewhere. */
export const INTERACTIVE_ATTEMPTS = 2;

export interface InteractiveCandidate {
  /** Connection key (one per socket). */
  key: string;
  volunteerId: string;
  threads: number;
}

/** What the router needs from the coordinator. */
export interface InteractiveHost {
  /** Volunteers connected now (after their hello). */
  candidates(): InteractiveCandidate[];
  /** Tasks the scheduler has leased to this connection. */
  leased(key: string): number;
  /** Sends to the connection; false when it is gone. */
  send(key: string, msg: ServerMessage): boolean;
}

export interface InteractiveOptions {
  timeoutMs?: number;
  /** Uniform in [0, 1); injected for tests. */
  random?: () => number;
  /** Milliseconds, for latency; performance.now by default. */
  now?: () => number;
}

export type InteractiveErrorCode = "no-volunteers" | "timeout" | "evaluation" | "closed";

export class InteractiveError extends Error {
  constructor(
    readonly code: InteractiveErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "InteractiveError";
  }
}

export interface InteractiveOutcome {
  value: number;
  ops: string[];
  volunteerId: string;
  /** The connection that answered, on the node that routed the task (see Coordinator.caughtInteractive). */
  key: string;
  /** Milliseconds from the request to the answer (retries included). */
  ms: number;
  /** Volunteers asked (1, or 2 after a retry). */
  attempts: number;
}

export interface VolunteerLoad {
  cpu: number;
  inFlight: number;
  /** Server time (ms) of the report. */
  at: number;
}

/**
 * Two distinct indices in [0, n), uniformly: the second is drawn from the n - 1 others, so a
 * pair never names one volunteer twice.
 */
export function pickPair(n: number, random: () => number): [number, number] {
  if (n < 2) throw new RangeError("a pair needs at least two candidates");
  const draw = (m: number) => Math.min(m - 1, Math.floor(random() * m));
  const i = draw(n);
  let j = draw(n - 1);
  if (j >= i) j++;
  return [i, j];
}

/** Power of two choices: the lower-scored of two distinct random items (the first on a tie). */
export function chooseTwo<T>(items: readonly T[], score: (item: T) => number, random: () => number): T | undefined {
  if (items.length === 0) return undefined;
  if (items.length === 1) return items[0];
  const [i, j] = pickPair(items.length, random);
  return score(items[j]) < score(items[i]) ? items[j] : items[i];
}

/** A volunteer's load: its reported CPU share plus this server's own count of what it holds, per thread. */
export function loadScore(cpu: number, leased: number, interactive: number, threads: number): number {
  return cpu + (leased + interactive) / Math.max(1, threads);
}

const calcAnswer = z.object({ value: z.number(), ops: z.array(z.string()).default([]) });

interface Pending {
  key: string;
  settle(r: { ok: true; value: number; ops: string[] } | { ok: false; retry: boolean; reason: string }): void;
}

/** Routes interactive tasks to volunteers and matches their answers. One per coordinator. */
export class InteractiveRouter {
  /** How long one volunteer gets to answer; settable at run time (tests shorten it). */
  timeoutMs: number;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly loads = new Map<string, VolunteerLoad>();
  private readonly inFlight = new Map<string, number>();
  private readonly pending = new Map<string, Pending>();
  /** Connections that let a task time out, and until when (this.now()) they are passed over. */
  private readonly silent = new Map<string, number>();
  private seq = 0;
  private closed = false;

  constructor(
    private readonly host: InteractiveHost,
    opts: InteractiveOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? INTERACTIVE_TIMEOUT_MS;
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? (() => performance.now());
  }

  /** A volunteer's load report. */
  report(key: string, msg: Pick<LoadReport, "cpu" | "inFlight">) {
    this.loads.set(key, { cpu: msg.cpu, inFlight: msg.inFlight, at: Date.now() });
  }

  /** The last load the connection reported, if any. */
  load(key: string): VolunteerLoad | undefined {
    return this.loads.get(key);
  }

  /** Interactive tasks sent to the connection and not answered yet. */
  interactiveInFlight(key: string): number {
    return this.inFlight.get(key) ?? 0;
  }

  score(c: InteractiveCandidate): number {
    return loadScore(this.loads.get(c.key)?.cpu ?? 0, this.host.leased(c.key), this.interactiveInFlight(c.key), c.threads);
  }

  /** The volunteer the next task would go to, or undefined when none can take it. */
  pick(exclude: ReadonlySet<string> = new Set()): InteractiveCandidate | undefined {
    // Paused volunteers (0 threads) have said they want no work.
    const now = this.now();
    const open = this.host.candidates().filter((c) => c.threads > 0 && !exclude.has(c.key) && !((this.silent.get(c.key) ?? 0) > now));
    return chooseTwo(open, (c) => this.score(c), this.random);
  }

  /** A volunteer answered: settles the matching request (answers from anyone else are ignored). */
  answer(key: string, msg: InteractiveResult) {
    const p = this.pending.get(msg.id);
    if (!p || p.key !== key) return;
    if (typeof msg.error === "string") return p.settle({ ok: false, retry: false, reason: msg.error });
    const parsed = calcAnswer.safeParse({ value: msg.value, ops: msg.ops });
    if (!parsed.success) return p.settle({ ok: false, retry: true, reason: "the volunteer sent a malformed answer" });
    p.settle({ ok: true, value: parsed.data.value, ops: parsed.data.ops });
  }

  /** Connections passed over now for having let a task time out. */
  private silentNow(): number {
    const now = this.now();
    let n = 0;
    for (const until of this.silent.values()) if (until > now) n++;
    return n;
  }

  /** The connection is gone: its unanswered tasks move on to another volunteer now. */
  forget(key: string) {
    this.loads.delete(key);
    this.silent.delete(key);
    for (const p of [...this.pending.values()]) {
      if (p.key === key) p.settle({ ok: false, retry: true, reason: "the volunteer disconnected" });
    }
  }

  close() {
    this.closed = true;
    for (const p of [...this.pending.values()]) p.settle({ ok: false, retry: false, reason: "the server is shutting down" });
  }

  /**
   * Runs one interactive task on the least loaded of two random volunteers; a volunteer that
   * does not answer in time (or drops) gets one stand-in. Rejects with an InteractiveError.
   */
  async run(kernel: InteractiveKernel, input: unknown): Promise<InteractiveOutcome> {
    const started = this.now();
    const tried = new Set<string>();
    let lastReason = "";
    for (let attempt = 1; attempt <= INTERACTIVE_ATTEMPTS; attempt++) {
      if (this.closed) throw new InteractiveError("closed", "the server is shutting down");
      const target = this.pick(tried);
      if (!target) {
        if (attempt === 1 && this.silentNow() > 0) throw new InteractiveError("timeout", `no volunteer answers now: ${this.silentNow()} connected let a task time out in the last minute`);
        if (attempt === 1) throw new InteractiveError("no-volunteers", "no volunteers are connected to compute this; try again when one joins");
        break;
      }
      tried.add(target.key);
      const r = await this.ask(target, kernel, input);
      if (r.ok) {
        return { value: r.value, ops: r.ops, volunteerId: target.volunteerId, key: target.key, ms: this.now() - started, attempts: attempt };
      }
      if (!r.retry) throw new InteractiveError(this.closed ? "closed" : "evaluation", r.reason);
      lastReason = r.reason;
    }
    const asked = tried.size === 1 ? "1 volunteer" : `${tried.size} volunteers`;
    throw new InteractiveError("timeout", `no volunteer answered (asked ${asked}, ${this.timeoutMs} ms each; last: ${lastReason})`);
  }

  private ask(target: InteractiveCandidate, kernel: InteractiveKernel, input: unknown) {
    const id = `i${(++this.seq).toString(36)}`;
    return new Promise<Parameters<Pending["settle"]>[0]>((resolve) => {
      const timer = setTimeout(() => {
        this.silent.set(target.key, this.now() + SILENT_PASS_MS);
        settle({ ok: false, retry: true, reason: `no answer within ${this.timeoutMs} ms` });
      }, this.timeoutMs);
      const settle: Pending["settle"] = (r) => {
        if (!this.pending.delete(id)) return;
        clearTimeout(timer);
        const n = (this.inFlight.get(target.key) ?? 1) - 1;
        if (n > 0) this.inFlight.set(target.key, n);
        else this.inFlight.delete(target.key);
        resolve(r);
      };
      this.pending.set(id, { key: target.key, settle });
      this.inFlight.set(target.key, this.interactiveInFlight(target.key) + 1);
      if (!this.host.send(target.key, { type: "interactive", id, kernel, input })) {
        settle({ ok: false, retry: true, reason: "the volunteer disconnected" });
      }
    });
  }
}
