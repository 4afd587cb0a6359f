/**
 * What the coordinator reports as it works, for metrics and alerts. The coordinator calls
 * these synchronously on its hot path, so implementations must only count.
 */
export interface CoordinatorObserver {
  dispatched(tasks: number): void;
  /** A result came back `turnaroundMs` after its lease started. */
  resultReceived(turnaroundMs: number): void;
  /** A volunteer reported that a kernel failed (or sent an output of the wrong shape). */
  taskError(): void;
  /** A unit reached its quorum with these many valid and invalid results. */
  validated(valid: number, invalid: number): void;
  jobFinished(state: "completed" | "failed" | "cancelled"): void;
  /** A frame from a volunteer was refused (bad JSON, wrong shape, …). */
  messageRejected(): void;
  commitSucceeded(items: number, seconds: number): void;
  commitFailed(): void;
}

export const noObserver: CoordinatorObserver = {
  dispatched() {}, resultReceived() {}, taskError() {}, validated() {}, jobFinished() {},
  messageRejected() {}, commitSucceeded() {}, commitFailed() {},
};
