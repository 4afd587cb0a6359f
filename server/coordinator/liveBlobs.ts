import type { JobMeta } from "./live";

// The blobs the jobs running here read (their program's code, their units' input chunks): what
// GET /api/blobs/<hash> serves to anyone, volunteers being anonymous. Any other stored blob (an
// uploaded data file or program's source, a large result) goes only to its owner: served to
// whoever named its sha256, a stranger learned whether a known file had been uploaded, and got
// its bytes.

/** Blob hashes read by the jobs this node runs, counted by how many jobs read each. */
export class LiveBlobs {
  private readonly count = new Map<string, number>();
  private readonly byJob = new Map<string, string[]>();

  /** The job (a scheduler job id) reads these blobs from now on. */
  add(jobId: string, hashes: Iterable<string>) {
    this.remove(jobId);
    const list = [...new Set(hashes)];
    if (!list.length) return;
    this.byJob.set(jobId, list);
    for (const h of list) this.count.set(h, (this.count.get(h) ?? 0) + 1);
  }

  /** The job ended here: its blobs are served no more, unless another job reads them. */
  remove(jobId: string) {
    const list = this.byJob.get(jobId);
    if (!list) return;
    this.byJob.delete(jobId);
    for (const h of list) {
      const n = (this.count.get(h) ?? 1) - 1;
      if (n > 0) this.count.set(h, n);
      else this.count.delete(h);
    }
  }

  has(hash: string): boolean {
    return this.count.has(hash);
  }
}

/** The blobs a job's tasks read: its program's code and its units' input chunks (prepareTask's fetches). */
export function blobsOf(params: unknown, units: ReadonlyArray<{ input: unknown }>): string[] {
  const out: string[] = [];
  const program = (params as { program?: { hash?: unknown; script?: unknown; kind?: unknown } } | null)?.program;
  if (program) {
    const code = program.kind === "js" ? program.script : program.hash;
    if (typeof code === "string") out.push(code);
  }
  for (const u of units) {
    const blob = blobOfInput(u.input);
    if (blob) out.push(blob);
  }
  return out;
}

/** The blob a unit's input names (a chunk, a shard, a large JSON item), if it names one. */
export function blobOfInput(input: unknown): string | undefined {
  const blob = (input as { blob?: unknown } | null)?.blob;
  return typeof blob === "string" ? blob : undefined;
}

/** The same, read from a unit row's JSON. */
export function blobOfRow(json: string): string | undefined {
  try {
    return blobOfInput(JSON.parse(json));
  } catch {
    return undefined;
  }
}

/** The coordinator's jobs: a job that leaves it (however it ends) takes its blobs with it. */
export class JobsWithBlobs extends Map<string, JobMeta> {
  readonly blobs = new LiveBlobs();

  override delete(id: string): boolean {
    this.blobs.remove(id);
    return super.delete(id);
  }

  override clear() {
    for (const id of this.keys()) this.blobs.remove(id);
    super.clear();
  }
}
