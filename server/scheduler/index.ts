// The scheduler core's public API. Records, the heap and the rotation are internals.
export { Scheduler } from "./scheduler.js";
export type { SchedulerOptions } from "./scheduler.js";
export { outputsAgree } from "./compare.js";
export { DEFAULT_REPLICATION } from "./types.js";
export type * from "./types.js";
