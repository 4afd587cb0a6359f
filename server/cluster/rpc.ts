import crypto from "node:crypto";
import type { ClusterBus } from "./bus";

/**
 * Requests to one named node over the cluster bus, answered on a reply topic of the asker's:
 * used to hand an interactive task to a node that has volunteers. Best effort with a timeout,
 * like the bus itself.
 */
export class NodeRpc {
  private readonly waiting = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly offs: Array<() => void> = [];

  constructor(private readonly bus: ClusterBus, private readonly nodeId: string) {
    this.offs.push(bus.subscribe(`reply:${nodeId}`, (m) => {
      const r = m as { id?: string; ok?: boolean; value?: unknown; error?: { code?: string; message?: string } };
      const w = r.id ? this.waiting.get(r.id) : undefined;
      if (!w) return;
      this.waiting.delete(r.id!);
      clearTimeout(w.timer);
      if (r.ok) w.resolve(r.value);
      else w.reject(Object.assign(new Error(r.error?.message ?? "the other node failed"), { code: r.error?.code }));
    }));
  }

  /** Answers `name` requests addressed to this node. A thrown error's `code` and message go back. */
  serve(name: string, handler: (payload: unknown) => Promise<unknown>) {
    this.offs.push(this.bus.subscribe(`rpc:${this.nodeId}:${name}`, (m) => {
      const req = m as { id?: string; from?: string; payload?: unknown };
      if (typeof req.id !== "string" || typeof req.from !== "string") return;
      handler(req.payload).then(
        (value) => this.bus.publish(`reply:${req.from}`, { id: req.id, ok: true, value }),
        (e: Error & { code?: string }) => this.bus.publish(`reply:${req.from}`, { id: req.id, ok: false, error: { code: e.code, message: e.message } }),
      );
    }));
  }

  call(node: string, name: string, payload: unknown, timeoutMs: number): Promise<unknown> {
    const id = crypto.randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(Object.assign(new Error(`node ${node} did not answer in ${timeoutMs} ms`), { code: "timeout" }));
      }, timeoutMs);
      timer.unref();
      this.waiting.set(id, { resolve, reject, timer });
      this.bus.publish(`rpc:${node}:${name}`, { id, from: this.nodeId, payload });
    });
  }

  close() {
    for (const off of this.offs) off();
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(Object.assign(new Error("the server is shutting down"), { code: "closed" }));
    }
    this.waiting.clear();
  }
}
