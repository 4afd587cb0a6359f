import { apiClient } from "../../cli/client";
import { openModel } from "./openModel";

// The calc phase's caller, a process of its own (bench/lib/calcCaller.ts): a consumer's calls
// come from its own machine, not from the load generator's event loop, which runs the fleet's
// sockets and computes the greedy volunteers' tasks. Measured there, a call's answer waited for
// whatever the fleet was doing (its loop stalls of 11–19 ms were the calc p99's slowest calls).
// Reads {url, apiKey, perSecond, n} as JSON from argv; prints the open model's result as JSON.

const WARM_UP_CALLS = 3;

const { url, apiKey, perSecond, n } = JSON.parse(process.argv[2]!) as { url: string; apiKey: string; perSecond: number; n: number };
const api = apiClient({ url, apiKey });
const call = (i: number) => api.calc.evaluate.mutate({ expression: `${i} * (3 + 4) / 7` });
// A connection and a warm client, as the in-process caller had from the phases before.
for (let i = 0; i < WARM_UP_CALLS; i++) await call(i).catch(() => undefined);
process.stdout.write(`${JSON.stringify(await openModel(perSecond, n, call))}\n`);
