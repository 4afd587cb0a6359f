// The scheduler core's public API. Records, the heap and the rotation are internals.
export { Scheduler } from "./scheduler.js";
export type { SchedulerOptions } from "./scheduler.js";
export type * from "./types.js";
