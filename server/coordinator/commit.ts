import { GroupCommitter } from "../store/groupCommit";
import { DbWriter } from "../store/dbWriter";
import { sqliteGate, type Db } from "../store/prisma";
import type { PersistOp } from "../services/jobs/batchSql";
import type { CoordinatorObserver } from "../monitoring/observer";

/**
 * Where the result pipeline's writes land: results, verdicts, payouts, registrations and job
 * endings queue on one group committer, whose batches the database writer thread writes in order.
 */
export class Commit {
  readonly queue: GroupCommitter<PersistOp>;
  // The database write seam
  private dbWriter: DbWriter | undefined;

  constructor(
    private readonly db: Db,
    opts: { intervalMs: number; observer: CoordinatorObserver; log: (msg: string) => void; committed: () => void },
  ) {
    this.queue = new GroupCommitter(
      async (ops) => {
        const started = performance.now();
        await (await this.writerThread()).write(ops);
        opts.observer.commitSucceeded(ops.length, (performance.now() - started) / 1000);
        opts.committed();
      },
      {
        intervalMs: opts.intervalMs,
        maxBatch: 5000,
        onError: (e) => {
          opts.observer.commitFailed();
          opts.log(`commit failed, will retry: ${(e as Error).message}`);
        },
      },
    );
  }

  /**
   * Writes `ops` in a transaction of their own on the database writer thread, outside the
   * group commit (a new job: its escrow hold may fail, and must fail alone).
   */
  async writeAlone(ops: PersistOp[]): Promise<void> {
    await (await this.writerThread()).write(ops);
  }

  /** The database writer thread (started with the server by recover(), or on first use). */
  async writerThread(): Promise<DbWriter> {
    return (this.dbWriter ??= new DbWriter((await sqliteGate(this.db)).file));
  }

  /** Starts the writer thread now rather than on the first result (it takes a few hundred ms). */
  async ready(): Promise<void> {
    await (await this.writerThread()).ready();
  }

  /** Commits what is queued, then stops the writer thread. */
  async close() {
    await this.queue.close();
    await this.dbWriter?.close();
  }
}
