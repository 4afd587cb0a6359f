import type { CoordinatorObserver } from "./observer";

/** One observer that tells several (the dashboard's interval counters and Prometheus). */
export function fanOut(...observers: CoordinatorObserver[]): CoordinatorObserver {
  return {
    dispatched: (tasks) => observers.forEach((o) => o.dispatched(tasks)),
    resultReceived: (ms) => observers.forEach((o) => o.resultReceived(ms)),
    taskError: () => observers.forEach((o) => o.taskError()),
    validated: (valid, invalid) => observers.forEach((o) => o.validated(valid, invalid)),
    jobFinished: (state) => observers.forEach((o) => o.jobFinished(state)),
    spotChecked: (caught) => observers.forEach((o) => o.spotChecked(caught)),
    messageRejected: () => observers.forEach((o) => o.messageRejected()),
    commitSucceeded: (items, seconds) => observers.forEach((o) => o.commitSucceeded(items, seconds)),
    resultsAcked: (ms) => observers.forEach((o) => o.resultsAcked(ms)),
    commitFailed: () => observers.forEach((o) => o.commitFailed()),
    commitDropped: (op) => observers.forEach((o) => o.commitDropped(op)),
    shed: (reason, count) => observers.forEach((o) => o.shed(reason, count)),
  };
}
