import type { InteractiveResult, LoadReport, ServerMessage } from "../protocol/messages";
import { describeInteractive, runInteractive } from "./index";

// The volunteer's side of interactive tasks: answer them at once, keep a short log of what
// was computed, and tell the server how loaded this volunteer is.

export const INTERACTIVE_LOG_LIMIT = 200;

export interface InteractiveLogEntry {
  /** Epoch ms when it was answered. */
  at: number;
  kernel: string;
  expression: string;
  value?: number;
  error?: string;
  /** The operations run, in order ("3 + 4 = 7"). */
  ops: string[];
  /** The one-line summary the CLI volunteer prints. */
  line: string;
}

/** Computes the answer to an "interactive" message, on the calling thread. */
export function answerInteractive(msg: Extract<ServerMessage, { type: "interactive" }>): { reply: InteractiveResult; entry: InteractiveLogEntry } {
  const expression = typeof (msg.input as { expression?: unknown })?.expression === "string" ? (msg.input as { expression: string }).expression : JSON.stringify(msg.input);
  let reply: InteractiveResult;
  let entry: Omit<InteractiveLogEntry, "line">;
  try {
    const { value, ops } = runInteractive(msg.kernel, msg.input);
    reply = { type: "interactive-result", id: msg.id, value, ops };
    entry = { at: Date.now(), kernel: msg.kernel, expression, value, ops };
  } catch (e) {
    const error = String((e as Error)?.message ?? e).slice(0, 2000);
    reply = { type: "interactive-result", id: msg.id, error };
    entry = { at: Date.now(), kernel: msg.kernel, expression, error, ops: (e as { ops?: string[] }).ops ?? [] };
  }
  return { reply, entry: { ...entry, line: describeInteractive(msg.kernel, msg.input, entry) } };
}

/** The log with `entry` appended, keeping the newest INTERACTIVE_LOG_LIMIT entries. */
export function appendLog(log: readonly InteractiveLogEntry[], entry: InteractiveLogEntry): InteractiveLogEntry[] {
  const next = log.length >= INTERACTIVE_LOG_LIMIT ? log.slice(log.length - INTERACTIVE_LOG_LIMIT + 1) : log.slice();
  next.push(entry);
  return next;
}

export interface LoadReporterOptions {
  measure(): { cpu: number; inFlight: number };
  send(msg: LoadReport): void;
  /** How often to look (default 1500 ms); a report goes out when the load moved at all. */
  intervalMs?: number;
  /** Report even an unchanged load this often (default 10 s). */
  heartbeatMs?: number;
  /** Reports on big changes come at most this often (default 250 ms), however fast tasks churn. */
  minGapMs?: number;
}

/** Sends "load" reports: every interval if the load moved, at once if it moved a lot. */
export class LoadReporter {
  private timer: ReturnType<typeof setInterval> | undefined;
  private last: { cpu: number; inFlight: number; at: number } | undefined;

  constructor(private readonly opts: LoadReporterOptions) {}

  start() {
    this.stop();
    this.report();
    this.timer = setInterval(() => this.tick(), this.opts.intervalMs ?? 1500);
    (this.timer as { unref?: () => void }).unref?.();
  }

  stop() {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.last = undefined;
  }

  /** Something changed (tasks came or went): report now if the load moved a lot. */
  changed() {
    if (this.timer === undefined || !this.last) return;
    const m = this.measure();
    const big = Math.abs(m.cpu - this.last.cpu) >= 0.25 || Math.abs(m.inFlight - this.last.inFlight) >= 4;
    if (big && Date.now() - this.last.at >= (this.opts.minGapMs ?? 250)) this.report(m);
  }

  private tick() {
    if (!this.last) return this.report();
    const m = this.measure();
    const moved = Math.abs(m.cpu - this.last.cpu) >= 0.01 || m.inFlight !== this.last.inFlight;
    if (moved || Date.now() - this.last.at >= (this.opts.heartbeatMs ?? 10_000)) this.report(m);
  }

  private measure() {
    const m = this.opts.measure();
    const cpu = Number.isFinite(m.cpu) ? Math.min(1, Math.max(0, m.cpu)) : 0;
    return { cpu: Math.round(cpu * 1000) / 1000, inFlight: Math.min(100_000, Math.max(0, Math.floor(m.inFlight) || 0)) };
  }

  private report(m = this.measure()) {
    this.last = { ...m, at: Date.now() };
    this.opts.send({ type: "load", ...m });
  }
}
