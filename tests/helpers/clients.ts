import { createTRPCClient, httpLink, TRPCClientError } from "@trpc/client";
import WebSocket from "ws";
import type { AppRouter } from "../../server/api/root";
import type { Db } from "../../server/store/prisma";
import { getKernel } from "../../worker/kernels";
import { PROTOCOL_VERSION, VOLUNTEER_WS_PATH, type ServerMessage, type WireTask } from "../../worker/protocol/messages";
import { waitFor, newIdentity, type VolunteerIdentity } from "./server";

/** The tRPC client the CLI and pages use, over plain HTTP. */
export function trpc(url: string, apiKey?: string, headers: Record<string, string> = {}) {
  return createTRPCClient<AppRouter>({
    links: [httpLink({ url: `${url}/api/trpc`, headers: () => (apiKey ? { ...headers, authorization: `Bearer ${apiKey}` } : headers) })],
  });
}

/** Runs a call that must fail and returns the error (code, HTTP status, message). */
export async function trpcError(call: Promise<unknown>) {
  try {
    await call;
  } catch (e) {
    if (!(e instanceof TRPCClientError)) throw e;
    const data = e.data as { code?: string; httpStatus?: number } | undefined;
    return { code: data?.code, httpStatus: data?.httpStatus, message: e.message };
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** A task's honest result, computed by its built-in kernel. */
export function computeTask(t: WireTask) {
  const kernel = getKernel(t.kernel)!;
  return { taskId: t.taskId, output: kernel.run(kernel.params.parse(t.params), t.input) };
}

/** A raw volunteer socket speaking the protocol by hand, recording everything it receives. */
export class RawVolunteer {
  readonly messages: ServerMessage[] = [];
  closed: { code: number; reason: string } | undefined;
  private constructor(readonly ws: WebSocket, readonly identity: VolunteerIdentity) {
    ws.on("message", (data) => this.messages.push(JSON.parse(data.toString()) as ServerMessage));
    ws.on("close", (code, reason) => (this.closed = { code, reason: reason.toString() }));
    ws.on("error", () => {});
  }

  /** Tasks it was sent and has answered (answerNew). */
  private readonly answered = new Set<string>();

  /** Connected, said hello with `threads`, and welcomed. */
  static async welcomed(url: string, threads: number, opts: { identity?: VolunteerIdentity } = {}) {
    const v = await RawVolunteer.connect(url, opts);
    v.hello(threads);
    await v.next("welcome");
    return v;
  }

  /** Answers the tasks it was sent and has not answered yet (honestly, unless told how); how many. */
  answerNew(reply: (t: WireTask) => unknown = computeTask): number {
    const fresh = this.tasks().filter((t) => !this.answered.has(t.taskId));
    for (const t of fresh) this.answered.add(t.taskId);
    if (fresh.length) this.send({ type: "results", results: fresh.map(reply) });
    return fresh.length;
  }

  static async connect(url: string, opts: { identity?: VolunteerIdentity; headers?: Record<string, string> } = {}) {
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}${VOLUNTEER_WS_PATH}`, { headers: opts.headers });
    const v = new RawVolunteer(ws, opts.identity ?? newIdentity());
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return v;
  }

  send(msg: unknown) {
    this.ws.send(typeof msg === "string" ? msg : JSON.stringify(msg));
  }

  hello(threads: number, extra: Record<string, unknown> = {}) {
    this.send({ type: "hello", protocol: PROTOCOL_VERSION, ...this.identity, threads, agent: "node", ...extra });
  }

  /** The first message after `from` (an index into messages) that matches, waiting for it. */
  next<T extends ServerMessage["type"]>(type: T, from = 0, timeoutMs = 5000): Promise<Extract<ServerMessage, { type: T }>> {
    return waitFor(
      () => this.messages.slice(from).find((m) => m.type === type) as Extract<ServerMessage, { type: T }> | undefined,
      timeoutMs,
      `a "${type}" message`,
      5,
    );
  }

  /** Sends and waits for the reply of the given type that follows it. */
  async request<T extends ServerMessage["type"]>(msg: unknown, type: T) {
    const from = this.messages.length;
    this.send(msg);
    return this.next(type, from);
  }

  waitClosed(timeoutMs = 5000) {
    return waitFor(() => this.closed, timeoutMs, "the socket to close", 5);
  }

  tasks() {
    return this.messages.flatMap((m) => (m.type === "tasks" ? m.tasks : []));
  }

  close() {
    this.ws.close();
    return this.waitClosed();
  }
}

/** Everything that money and work live in; compared before and after to prove nothing changed. */
export async function dbSnapshot(db: Db) {
  const [jobs, units, entries, accounts] = await Promise.all([
    db.job.findMany({ orderBy: { id: "asc" }, select: { id: true, state: true, cost: true, unitsDone: true, result: true } }),
    db.workUnit.findMany({ orderBy: { id: "asc" }, select: { id: true, done: true, output: true, volunteerId: true } }),
    db.ledgerEntry.count(),
    db.account.findMany({ orderBy: { id: "asc" }, select: { id: true, balance: true } }),
  ]);
  return { jobs, units, entries, accounts };
}
