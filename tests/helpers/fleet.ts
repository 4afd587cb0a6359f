import WebSocket from "ws";
import { VolunteerClient, type SocketLike, type VolunteerSnapshot } from "../../worker/client/volunteerClient";
import { WorkerPool, type PoolWorker } from "../../worker/runtime/pool";
import { runTask, type TaskResult, type TaskRun } from "../../worker/runtime/runTask";
import { getKernel } from "../../worker/kernels";
import { VOLUNTEER_WS_PATH } from "../../worker/protocol/messages";
import { newIdentity, waitFor, type VolunteerIdentity } from "./server";

// In-process volunteers: the real VolunteerClient over a real `ws` socket, with a real
// WorkerPool whose workers run the real kernels on this thread (no thread start-up cost), so
// a test can field a dozen volunteers, cheat with some of them and cut their sockets at will.

/** What a volunteer's worker does with a task: `runTask` for an honest one. */
export type Compute = (task: TaskRun) => TaskResult;

export const honest: Compute = runTask;

/**
 * A pi cheater: computes the unit, then reports `inside` off by `delta` (still a well-formed
 * output, so only replication can catch it). Cheaters with the same delta agree with each other.
 */
export function piCheater(delta: number): Compute {
  return (task) => {
    const r = runTask(task);
    const out = r.output as { inside: number; samples: number };
    const inside = Math.min(out.samples, Math.max(0, out.inside + delta));
    if (inside === out.inside) throw new Error("piCheater: delta has no effect on this unit");
    return { ...r, output: { ...out, inside } };
  };
}

export interface FleetVolunteerOptions {
  name?: string;
  identity?: VolunteerIdentity;
  /** Sent as a bearer token on the upgrade, as `tabgrid volunteer --api-key` does. */
  apiKey?: string;
  threads?: number;
  /** Reconnect with backoff after the socket drops (default true). */
  reconnect?: boolean;
  compute?: Compute;
  /** Awaited before each task is computed: lets a test step the fleet a task at a time. */
  gate?: Permits;
}

/**
 * Permits a fleet's workers take one per task. Closed at first: `release(n)` lets n more tasks
 * be computed, `open()` lets all through from then on.
 */
export class Permits {
  private left = 0;
  private opened = false;
  private waiting: Array<() => void> = [];
  /** Tasks computed through this gate so far (taken permits). */
  taken = 0;
  release(n = 1) {
    this.left += n;
    this.drain();
  }
  open() {
    this.opened = true;
    this.drain();
  }
  take(): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.drain();
    });
  }
  private drain() {
    while (this.waiting.length && (this.opened || this.left > 0)) {
      if (!this.opened) this.left--;
      this.taken++;
      this.waiting.shift()!();
    }
  }
}

export interface FleetVolunteer {
  name: string;
  identity: VolunteerIdentity;
  client: VolunteerClient;
  /** Outputs this volunteer computed (sent or not). */
  computed: number;
  /** Sockets opened so far (1 + reconnections). */
  connections: number;
  logs: string[];
  snapshot(): VolunteerSnapshot;
  /** Cuts the socket with no close handshake, as a crashed machine or a lost network does. */
  cut(): void;
  /** Cuts the socket and never comes back. */
  kill(): void;
  stop(): void;
  /** Resolves once the server welcomed the current connection. */
  connected(timeoutMs?: number): Promise<VolunteerSnapshot>;
}

export function wsUrl(httpUrl: string) {
  return `${httpUrl.replace(/^http/, "ws")}${VOLUNTEER_WS_PATH}`;
}

/** A pool of `threads` in-process workers running `compute`, one task per macrotask. */
function inProcessPool(threads: number, compute: Compute, onComputed: () => void, gate?: Permits): WorkerPool {
  const factory = (): PoolWorker => {
    let dead = false;
    return {
      api: {
        run: async (task) => {
          await gate?.take();
          return new Promise<TaskResult>((resolve, reject) => {
            // A macrotask, so sockets and the server (in-process too) get their turn between tasks.
            setImmediate(() => {
              if (dead) return;
              try {
                const r = compute(task);
                onComputed();
                resolve(r);
              } catch (e) {
                reject(e);
              }
            });
          });
        },
      },
      terminate: () => {
        dead = true;
      },
    };
  };
  return new WorkerPool(factory, { threads });
}

export function startVolunteer(url: string, opts: FleetVolunteerOptions = {}): FleetVolunteer {
  const identity = opts.identity ?? newIdentity();
  let socket: WebSocket | undefined;
  const logs: string[] = [];
  const v: FleetVolunteer = {
    name: opts.name ?? identity.volunteerId,
    identity,
    client: undefined as unknown as VolunteerClient,
    computed: 0,
    connections: 0,
    logs,
    snapshot: () => v.client.snapshot(),
    cut: () => socket?.terminate(),
    kill: () => {
      socket?.terminate();
      v.client.stop();
    },
    stop: () => v.client.stop(),
    connected: (timeoutMs = 10_000) =>
      waitFor(() => {
        const s = v.client.snapshot();
        return s.connection === "connected" ? s : undefined;
      }, timeoutMs, `volunteer ${v.name} to be welcomed`),
  };
  v.client = new VolunteerClient({
    url: wsUrl(url),
    ...identity,
    threads: opts.threads ?? 1,
    agent: "node",
    name: v.name,
    reconnect: opts.reconnect ?? true,
    connect: (u) => {
      v.connections++;
      socket = new WebSocket(u, { headers: opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {} });
      return socket as unknown as SocketLike;
    },
    createPool: (n) => inProcessPool(n, opts.compute ?? honest, () => v.computed++, opts.gate),
    log: (m) => logs.push(m),
  });
  v.client.start();
  return v;
}

/** Starts `n` volunteers (named `${prefix}-i`) and waits until the server welcomed each. */
export async function startFleet(url: string, n: number, opts: FleetVolunteerOptions & { prefix?: string } = {}) {
  const fleet = Array.from({ length: n }, (_, i) => startVolunteer(url, { ...opts, name: `${opts.prefix ?? "vol"}-${i}` }));
  await Promise.all(fleet.map((v) => v.connected()));
  return fleet;
}

/**
 * What a job must come out as: the kernel's own split, run and reduce, in this process, on
 * the parameters as submitted (give seeded kernels a seed: the server only picks one when
 * none is given).
 */
export function computeLocally(kernelName: string, params: Record<string, unknown>, chunks: number) {
  const kernel = getKernel(kernelName);
  if (!kernel) throw new Error(`no kernel ${kernelName}`);
  const p = kernel.params.parse(params);
  const outputs = kernel.split(p, chunks).map((u) => kernel.run(p, u.input));
  return { outputs, result: kernel.reduce(p, outputs) as unknown };
}

export { seededRandom } from "./random";
