import { Worker } from "node:worker_threads";
import { bundledEntry } from "../../worker/node/bundle";
import type { DigestReply } from "./digestThread";

/** Frames from this size on have their outputs' canonical texts and digests made on the thread. */
export const THREAD_DIGEST_BYTES = 256 * 1024;
/**
 * Frames at the thread at once. Each waits there as its text (up to MAX_WS_MESSAGE_BYTES), so
 * this bounds the memory; past it a frame is digested on the loop, as every frame once was.
 */
const MAX_FRAMES_OUT = 8;
/** The thread's heap: one 4 MiB frame parsed and serialised at a time takes well under 200 MB. */
const THREAD_HEAP_MB = 384;

export type OutputTexts = NonNullable<DigestReply["texts"]>;
/** What the thread made of a frame: its outputs' texts (null if it could not), and whether it nests within bounds. */
export type Digested = Omit<DigestReply, "id">;
const UNREAD: Digested = { texts: null, shallow: false };

/**
 * The canonical JSON and digest of each output of a large results frame, made on a thread of
 * their own (digestThread.ts) while the loop goes on with other sockets. Never fails: a thread
 * that dies or cannot read the frame answers null texts, and the loop computes them itself.
 */
export class OutputDigests {
  private worker: Promise<Worker> | undefined;
  private seq = 0;
  private closed = false;
  private readonly pending = new Map<number, (d: Digested) => void>();

  /** Whether a frame of `bytes` goes to the thread now. */
  wants(bytes: number): boolean {
    return !this.closed && bytes >= THREAD_DIGEST_BYTES && this.pending.size < MAX_FRAMES_OUT;
  }

  /** Per result of the frame `raw`, in order: its output's text and digest, or null for none. */
  digests(raw: string): Promise<Digested> {
    return new Promise((resolve) => {
      const id = ++this.seq;
      this.pending.set(id, resolve);
      (this.worker ??= this.start()).then(
        (w) => {
          if (this.pending.size === 1) w.ref();
          w.postMessage({ id, raw });
        },
        () => this.settle(id, UNREAD),
      );
    });
  }

  private settle(id: number, d: Digested) {
    const resolve = this.pending.get(id);
    this.pending.delete(id);
    resolve?.(d);
  }

  private async start(): Promise<Worker> {
    const code = await bundledEntry(new URL("./digestThread.ts", import.meta.url));
    const w = new Worker(code, { eval: true, resourceLimits: { maxOldGenerationSizeMb: THREAD_HEAP_MB } });
    const me = this.worker;
    w.on("message", (m: DigestReply) => {
      this.settle(m.id, { texts: m.texts, shallow: m.shallow });
      if (!this.pending.size) w.unref();
    });
    const fail = () => {
      if (this.worker === me) this.worker = undefined;
      for (const id of [...this.pending.keys()]) this.settle(id, UNREAD);
    };
    w.on("error", fail);
    w.on("exit", fail);
    w.unref();
    return w;
  }

  async close() {
    this.closed = true;
    const started = this.worker;
    this.worker = undefined;
    for (const id of [...this.pending.keys()]) this.settle(id, UNREAD);
    if (started) await (await started.catch(() => undefined))?.terminate();
  }
}
