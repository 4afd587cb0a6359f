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
  /** The server recomputed a unit (a spot-check); `caught` results disagreed with it. */
  spotChecked(caught: number): void;
  /** A frame from a volunteer was refused (bad JSON, wrong shape, …). */
  messageRejected(): void;
  commitSucceeded(items: number, seconds: number): void;
  /**
   * A results frame was acknowledged `ms` after it was handled: its wait for the group commit
   * and the commit itself (the server's own part of a result's round trip).
   */
  resultsAcked(ms: number): void;
  commitFailed(): void;
  /** An operation of this type failed alone on its data and was dropped (see groupCommit.ts). */
  commitDropped(op: string): void;
  /** Work the server turned away or put off to protect itself (see ShedReason). */
  shed(reason: ShedReason, count?: number): void;
}

/**
 * - dispatch-paused: no new tasks went out while too many results waited for the database.
 * - connection-refused: a volunteer socket over the connection limit was closed at once.
 * - frame-too-large: a frame over MAX_WS_MESSAGE_BYTES closed its socket.
 * - submission-throttled: a consumer over the submission rate was told to retry later.
 * - overloaded: the event loop was behind, so a new request or volunteer socket was refused at
 *   the edge (503 with Retry-After, or close code 1013).
 * - new-volunteer-throttled: a hello with an id new to the server came from an address that
 *   brought in NEW_VOLUNTEERS_PER_ADDRESS new ids within the hour (close code 1013).
 */
export type ShedReason = "dispatch-paused" | "connection-refused" | "frame-too-large" | "submission-throttled" | "overloaded" | "new-volunteer-throttled";
export const SHED_REASONS: ShedReason[] = ["dispatch-paused", "connection-refused", "frame-too-large", "submission-throttled", "overloaded", "new-volunteer-throttled"];

export const noObserver: CoordinatorObserver = {
  dispatched() {}, resultReceived() {}, taskError() {}, validated() {}, jobFinished() {}, spotChecked() {},
  messageRejected() {}, commitSucceeded() {}, resultsAcked() {}, commitFailed() {}, commitDropped() {}, shed() {},
};
