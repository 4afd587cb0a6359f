import { Worker } from "node:worker_threads";
import { threadTarget } from "../../worker/node/threadTarget";
import type { PersistOp } from "../services/jobs/batchSql";

/**
 * Writes group-commit batches on a thread of its own (dbWriterThread.ts), so the event loop
 * keeps reading sockets and dispatching while SQLite works, and the next batch grows while
 * this one commits. A failed or dead thread fails the batch (the commit queue retries it) and
 * a fresh thread is started for the next.
 */
export class DbWriter {
  private worker: Worker | undefined;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();

  constructor(private readonly file: string, private readonly busyTimeoutMs = 30_000) {}

  write(ops: PersistOp[]): Promise<void> {
    const worker = (this.worker ??= this.start());
    const id = ++this.seq;
    // Referenced while a batch is out, so the process waits for it; idle, it keeps nothing alive.
    if (!this.pending.size) worker.ref();
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // One string, not a structured clone of thousands of small objects (several times slower).
      worker.postMessage({ id, ops: JSON.stringify(ops) });
    });
  }

  /** Starts the thread (if it is not running) and waits until it has the database open. */
  ready(): Promise<void> {
    return this.write([]);
  }

  private start(): Worker {
    const target = threadTarget(new URL("./dbWriterThread.ts", import.meta.url));
    const w = new Worker(target.url, { workerData: { ...target.workerData, file: this.file, busyTimeoutMs: this.busyTimeoutMs }, execArgv: [] });
    w.on("message", (m: { id: number; error?: string }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (!this.pending.size) w.unref();
      if (m.error === undefined) p?.resolve();
      else p?.reject(new Error(m.error));
    });
    const fail = (e: Error) => {
      if (this.worker === w) this.worker = undefined;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    w.on("error", fail);
    w.on("exit", (code) => fail(new Error(`the database writer thread exited (${code})`)));
    w.unref();
    return w;
  }

  /** Stops the thread once what was sent is written. */
  async close() {
    const w = this.worker;
    if (!w) return;
    this.worker = undefined;
    await Promise.allSettled([...this.pending.values()].map((p) => new Promise<void>((r) => {
      const { resolve, reject } = p;
      p.resolve = () => (resolve(), r());
      p.reject = (e) => (reject(e), r());
    })));
    const exited = new Promise((r) => w.once("exit", r));
    w.postMessage({ close: true });
    await exited;
  }
}
