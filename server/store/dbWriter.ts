import { Worker } from "node:worker_threads";
import type { MutexInterface } from "async-mutex";
import type { PersistOp } from "../services/jobs/batchSql";
import { bundledEntry } from "../../worker/node/bundle";

/** The writer thread's young generation (MB): see start(). */
export const WRITER_YOUNG_GENERATION_MB = 6;

/**
 * Writes group-commit batches on a thread of its own (dbWriterThread.ts), so the event loop
 * keeps reading sockets and dispatching while SQLite works, and the next batch grows while
 * this one commits. A failed or dead thread fails the batch (the commit queue retries it) and
 * a fresh thread is started for the next.
 */
export class DbWriter {
  private worker: Promise<Worker> | undefined;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (value?: unknown) => void; reject: (e: Error) => void }>();
  private last: Promise<void> = Promise.resolve();

  constructor(
    private readonly file: string,
    /** The process's write lock on the database (SqliteGate.writeLock): each batch takes its turn. */
    private readonly lock?: MutexInterface,
    private readonly busyTimeoutMs = 30_000,
  ) {}

  write(ops: PersistOp[]): Promise<void> {
    return (this.last = this.lock ? this.lock.runExclusive(() => this.post(ops)) : this.post(ops));
  }

  private async post(ops: PersistOp[]): Promise<void> {
    const worker = await (this.worker ??= this.start());
    const id = ++this.seq;
    // Referenced while a batch is out, so the process waits for it; idle, it keeps nothing alive.
    if (!this.pending.size) worker.ref();
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve: () => resolve(), reject });
      // One string, not a structured clone of thousands of small objects (several times slower).
      worker.postMessage({ id, ops: JSON.stringify(ops) });
    });
  }

  /** Starts the thread (if it is not running) and waits until it has the database open. */
  ready(): Promise<void> {
    return this.write([]);
  }

  /** The value of one setting (`PRAGMA name`) of the thread's connection, e.g. "synchronous". */
  async setting(name: string): Promise<unknown> {
    const worker = await (this.worker ??= this.start());
    const id = ++this.seq;
    if (!this.pending.size) worker.ref();
    return new Promise<unknown>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, setting: name });
    });
  }

  private async start(): Promise<Worker> {
    const w = new Worker(await threadCode(), {
      eval: true, workerData: { file: this.file, busyTimeoutMs: this.busyTimeoutMs },
      // What the thread allocates (a batch's JSON, parsed and written) is dead once the batch is
      // committed; V8's default young generation grew to ~40 MB of it for ~4 MB live.
      resourceLimits: { maxYoungGenerationSizeMb: WRITER_YOUNG_GENERATION_MB },
    });
    const me = this.worker;
    w.on("message", (m: { id: number; value?: unknown; error?: string; name?: string; code?: string; needed?: number; available?: number }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (!this.pending.size) w.unref();
      if (m.error === undefined) p?.resolve(m.value);
      else p?.reject(Object.assign(new Error(m.error), { name: m.name ?? "Error", code: m.code, needed: m.needed, available: m.available }));
    });
    const fail = (e: Error) => {
      if (this.worker === me) this.worker = undefined;
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
    const started = this.worker;
    if (!started) return;
    this.worker = undefined;
    const w = await started;
    // The thread answers in order: once the last write settles, every earlier one has.
    await this.last.catch(() => undefined);
    const exited = new Promise((r) => w.once("exit", r));
    w.postMessage({ close: true });
    await exited;
  }
}

/**
 * The thread's code, bundled once per process into one CommonJS script run with `eval`:
 * a thread that loaded the TypeScript sources through tsx would cost ~35 MB of memory, this
 * one ~15. better-sqlite3 (a native addon) stays outside, required by its absolute path.
 */
function threadCode(): Promise<string> {
  return bundledEntry(new URL("./dbWriterThread.ts", import.meta.url), { packages: ["better-sqlite3"] });
}
