import { GroupCommitter, LONE_TRIES } from "../store/groupCommit";
import { isDataError } from "../store/dataError";
import { hotStore, type HotStore } from "../store/hotStore";
import type { Db } from "../store/prisma";
import type { PersistOp } from "../services/jobs/batchSql";
import type { CoordinatorObserver } from "../monitoring/observer";

/**
 * Characters of outputs and inputs one batch carries at most: a batch is sent to the writer
 * thread as one JSON string (and on PostgreSQL as one transaction's parameters).
 */
const MAX_BATCH_BYTES = 32 * 1024 * 1024;

/** What an op carries that may be large: outputs, inputs, a merged result, a step's state. */
export function opWeight(op: PersistOp): number {
  switch (op.type) {
    case "result":
      return op.outputJson.length;
    case "validated":
      return op.canonicalJson.length;
    case "finish":
      return op.result?.length ?? 0;
    case "submit":
      return op.units.reduce((n, u) => n + u[2].length, 0);
    case "round":
      return (op.next?.length ?? 0) + op.state.length + op.units.reduce((n, u) => n + u[2].length, 0);
    default:
      return 0;
  }
}

/** What an op is about, for the log: its type and the ids it names. */
export function describeOp(op: PersistOp): string {
  const ids: string[] = [];
  const o = op as Partial<Record<"jobId" | "unitId" | "taskId" | "id" | "host", unknown>>;
  if (op.type === "submit") ids.push(`job ${op.job.id}`);
  for (const k of ["jobId", "unitId", "taskId", "id", "host"] as const) if (typeof o[k] === "string") ids.push(`${k} ${o[k]}`);
  return `a ${op.type} op${ids.length ? ` (${ids.join(", ")})` : ""}`;
}

/**
 * Where the result pipeline's writes land: results, verdicts, payouts, registrations and job
 * endings queue on one group committer, whose batches the hot store writes in order (SQLite's
 * writer thread, or one PostgreSQL transaction each: server/store/hotStore.ts).
 */
export class Commit {
  readonly queue: GroupCommitter<PersistOp>;
  private readonly store: HotStore;

  constructor(
    db: Db,
    opts: {
      intervalMs: number; observer: CoordinatorObserver; log: (msg: string) => void; committed: () => void;
      /** What joins each batch as it is sealed (the reliability rows of its verdicts). */
      seal?: () => PersistOp | undefined;
    },
  ) {
    this.store = hotStore(db);
    this.queue = new GroupCommitter(
      async (ops) => {
        const started = performance.now();
        await this.store.write(ops);
        opts.observer.commitSucceeded(ops.length, (performance.now() - started) / 1000);
        opts.committed();
      },
      {
        intervalMs: opts.intervalMs,
        maxBatch: 5000,
        maxBytes: MAX_BATCH_BYTES,
        weight: opWeight,
        seal: opts.seal,
        onError: (e) => {
          opts.observer.commitFailed();
          opts.log(`commit failed, will retry: ${(e as Error).message}`);
        },
        // One op a database refuses for its values would otherwise fail its batch forever and
        // stop every commit behind it (a cpuMs past PostgreSQL's integer did, until it was bounded).
        isolate: isDataError,
        onDropped: (op, e) => {
          opts.observer.commitDropped(op.type);
          opts.log(`commit dropped ${describeOp(op)}: it failed alone ${LONE_TRIES} times on its data: ${(e as Error).message}`);
        },
      },
    );
  }

  /**
   * Writes `ops` in a transaction of their own, outside the group commit (a new job: its
   * escrow hold may fail, and must fail alone).
   */
  async writeAlone(ops: PersistOp[]): Promise<void> {
    await this.store.write(ops);
  }

  /** Opens what writes now rather than on the first result (SQLite's thread takes a few hundred ms). */
  async ready(): Promise<void> {
    await this.store.ready();
  }

  /** Commits what is queued, then stops what writes. */
  async close() {
    await this.queue.close();
    await this.store.close();
  }
}
