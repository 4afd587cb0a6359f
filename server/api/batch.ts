/**
 * The most calls one tRPC request may batch. Each call runs on the event loop in the same turn
 * as the others, so an unbounded batch let one request hold the loop for as long as its sender
 * liked (a stranger's hundred price estimates: 3.6 s). The pages' batch link sends no more.
 */
export const MAX_TRPC_BATCH = 16;

/** The largest body of a tRPC request (the calls' inputs as JSON). */
export const TRPC_MAX_BODY_BYTES = 1024 * 1024;
