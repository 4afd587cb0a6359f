import type { TaskRun } from "../runtime/runTask";
import type { WireTask } from "../protocol/messages";

/** What the server puts in a program task's params. */
export interface ProgramTaskParams {
  program: { hash: string; kind: "js" | "wasm"; script: string | null };
  params: unknown;
  limits: { timeMs: number; memoryMb: number };
  /** Fields of `ctx` every unit of the job gets (a CSV input's `columns`). */
  context?: Record<string, unknown>;
}

/** A unit's input; `context` adds fields to `ctx` (an iterative job's `round` and `broadcast`). */
export type UnitInput = ({ value: unknown } | { blob: string; encoding: "text" | "bytes" }) & { context?: Record<string, unknown> };

const hex = (buf: ArrayBuffer) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");

/** GETs a URL's bytes: the status, and the body when it is 200. */
export type BlobDownload = (url: string, headers: Record<string, string>) => Promise<{ status: number; bytes?: Uint8Array<ArrayBuffer> }>;

/** A browser's download (and the default): fetch. */
export const fetchBytes: BlobDownload = async (url, headers) => {
  const res = await fetch(url, { headers });
  return res.ok ? { status: res.status, bytes: new Uint8Array(await res.arrayBuffer()) } : { status: res.status };
};

/** The sha256 of bytes as hex: a browser's (and the default) is WebCrypto's. */
export type Sha256Hex = (bytes: Uint8Array<ArrayBuffer>) => Promise<string> | string;

const webCryptoSha256: Sha256Hex = async (bytes) => hex(await crypto.subtle.digest("SHA-256", bytes));

export interface BlobCacheOptions {
  /** Most bytes kept (default 64 MiB). */
  maxBytes?: number;
  headers?: Record<string, string>;
  /** Gets the bytes (default fetch; the CLI volunteer's is node:http, faster than Node's fetch). */
  download?: BlobDownload;
  /** Checks them (default WebCrypto; in Node, node:crypto's is 5x faster for a 1.7 MB shard). */
  sha256?: Sha256Hex;
}

/**
 * Content-addressed blobs (programs, input chunks) fetched once and kept by hash, checked
 * against their sha256 so a tampered download is refused. Least recently used go first.
 */
export class BlobCache {
  private readonly entries = new Map<string, Promise<Uint8Array>>();
  private sizes = new Map<string, number>();
  private total = 0;
  private readonly maxBytes: number;
  private readonly headers: Record<string, string>;
  private readonly download: BlobDownload;
  private readonly sha256: Sha256Hex;

  /** `baseUrl`: a server, or a function naming the one connected now (any node of a cluster serves every blob). */
  constructor(private readonly baseUrl: string | (() => string), opts: BlobCacheOptions = {}) {
    this.maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
    this.headers = opts.headers ?? {};
    this.download = opts.download ?? fetchBytes;
    this.sha256 = opts.sha256 ?? webCryptoSha256;
  }

  /** The blob's bytes; `token`, the one its task carried, lets any node of a cluster serve it. */
  get(hash: string, token?: string): Promise<Uint8Array> {
    const hit = this.entries.get(hash);
    if (hit) {
      this.entries.delete(hash);
      this.entries.set(hash, hit);
      return hit;
    }
    const p = this.fetch(hash, token);
    this.entries.set(hash, p);
    p.then(
      (bytes) => this.account(hash, bytes.length),
      () => this.entries.delete(hash),
    );
    return p;
  }

  /** Fetches a blob into the cache ahead of the tasks that will read it (a server's hint: failures are the task's to report). */
  prefetch(hash: string, token?: string): void {
    this.get(hash, token).catch(() => undefined);
  }

  private async fetch(hash: string, token?: string): Promise<Uint8Array> {
    const base = typeof this.baseUrl === "function" ? this.baseUrl() : this.baseUrl;
    const query = token ? `?t=${encodeURIComponent(token)}` : "";
    const { status, bytes } = await this.download(`${base}/api/blobs/${hash}${query}`, this.headers);
    if (!bytes) throw new Error(`could not fetch blob ${hash.slice(0, 12)}: HTTP ${status}`);
    if ((await this.sha256(bytes)) !== hash) throw new Error(`blob ${hash.slice(0, 12)} does not match its hash`);
    return bytes;
  }

  private account(hash: string, size: number) {
    this.sizes.set(hash, size);
    this.total += size;
    for (const old of this.entries.keys()) {
      if (this.total <= this.maxBytes || old === hash) break;
      this.total -= this.sizes.get(old) ?? 0;
      this.sizes.delete(old);
      this.entries.delete(old);
    }
  }
}

/**
 * Turns a wire task into what a worker runs: built-in kernels as they are; a program task
 * with its code and input fetched (cached by hash), so the sandboxed worker needs no network.
 */
export async function prepareTask(task: WireTask, blobs: BlobCache): Promise<TaskRun & { timeoutMs?: number }> {
  if (task.kernel !== "program") return { kernel: task.kernel, params: task.params, input: task.input };
  const p = task.params as ProgramTaskParams;
  const spec = task.input as UnitInput;
  // The code and the input are fetched at once (the first task of a job needs both).
  const code = p.program.kind === "js" ? p.program.script! : p.program.hash;
  const token = (hash: string) => (task.blobs && typeof task.blobs[hash] === "string" ? task.blobs[hash] : undefined);
  const [codeBytes, bytes] = await Promise.all([
    blobs.get(code, token(code)),
    "blob" in spec ? blobs.get(spec.blob, token(spec.blob)) : undefined,
  ]);
  let input: unknown;
  if ("value" in spec) input = spec.value;
  else input = spec.encoding === "bytes" ? bytes! : new TextDecoder().decode(bytes!);
  return {
    kernel: "program",
    params: {
      kind: p.program.kind, hash: p.program.hash,
      code: p.program.kind === "js" ? new TextDecoder().decode(codeBytes) : codeBytes,
      params: p.params, memoryLimitBytes: p.limits.memoryMb * 1024 * 1024,
      // A JSON string element and a chunk of text are both strings: WASM gets JSON text for one.
      inputKind: "value" in spec ? "json" : spec.encoding,
      ...(p.context || spec.context ? { context: { ...p.context, ...spec.context } } : {}),
      // An iterative job's units (they carry a round) may share one evaluation of the program.
      // The wire's job id is the scheduler's: the job's own id, then "~r<round>" or "@<slice>".
      ...(spec.context?.round !== undefined ? { keep: task.jobId.split(/[~@]/)[0] } : {}),
      ...("blob" in spec ? { inputRef: spec.blob } : {}),
    },
    input,
    timeoutMs: p.limits.timeMs,
  };
}
