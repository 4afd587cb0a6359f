import type Database from "better-sqlite3";
import { Mutex, withTimeout, type MutexInterface } from "async-mutex";

// Raw, synchronous SQL on a better-sqlite3 connection, for the hot paths where the query
// engine's per-query cost (~0.1–0.5 ms) and per-parameter cost would dominate: cached
// statements and multi-row statements. The database writer thread (dbWriterThread.ts) writes
// through one on its own connection; on the main thread one wraps Prisma's connection for raw
// reads (a burst of hellos, a job's outputs), which in WAL mode block no one.

type Conn = Database.Database;
type Row = unknown[];

/**
 * Settings of every connection that writes. `synchronous = FULL`: in WAL mode the WAL is
 * synced at every commit, so an acknowledged commit survives an OS crash or power loss, not
 * just a crash of this process. It must be set explicitly: better-sqlite3's SQLite is built
 * with SQLITE_DEFAULT_WAL_SYNCHRONOUS=1, so a connection to a WAL database is NORMAL (synced
 * only at checkpoints) unless told otherwise. Explicitly set, it also survives a later
 * `journal_mode = WAL`.
 */
export function configureWriter(conn: Conn) {
  conn.pragma("synchronous = FULL");
}

/** As long as SQLite's busy timeout on every connection: a lock held longer is an error, not a wait. */
const WRITE_LOCK_TIMEOUT_MS = 30_000;

export class SqliteGate {
  private conn: Conn | undefined;
  /**
   * This process's turn at the database's write lock, taken before SQLite's own: by the
   * writer thread's batches (dbWriter.ts) and by Prisma's transactions on the main connection.
   * SQLite makes a connection that finds the lock taken wait in its busy handler, which on
   * better-sqlite3 sleeps on the calling thread: a transaction begun while a batch was committing
   * stalled the event loop for the commit's length (18% of the main thread's time when `npm run
   * stress` offered 640 submissions a second). Waiting here is asynchronous.
   */
  readonly writeLock: MutexInterface = withTimeout(new Mutex(), WRITE_LOCK_TIMEOUT_MS,
    Object.assign(new Error(`database is locked: no turn at the write lock within ${WRITE_LOCK_TIMEOUT_MS / 1000} s`), { code: "SQLITE_BUSY" }));
  private readonly statements = new Map<string, Database.Statement>();

  /** The connection to work on (the adapter wrapper gives it Prisma's when Prisma connects). */
  attach(conn: Conn) {
    this.conn = conn;
  }

  get attached(): boolean {
    return !!this.conn;
  }

  /** The database file the connection has open. */
  get file(): string {
    if (!this.conn) throw new Error("the database connection is not open yet");
    return this.conn.name;
  }

  /** Runs synchronous reads on the connection (WAL: they see the last commit and block no one). */
  read<T>(fn: (conn: Conn) => T): T {
    if (!this.conn) throw new Error("the database connection is not open yet");
    return fn(this.conn);
  }

  /** A cached statement (Prisma's connection returns BigInts by default; these return numbers). */
  statement(conn: Conn, sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = conn.prepare(sql);
      if (s.reader) s.safeIntegers(false);
      this.statements.set(sql, s);
    }
    return s;
  }

  /**
   * Runs a multi-row statement over `rows`: `{values}` in `sql` stands for `(?, …), (?, …)`.
   * Rows go in blocks of 128, 16 and 1 so that only three statements per query are ever
   * prepared (and cached). Returns the rows a RETURNING clause gave back.
   */
  bulk<T = unknown>(conn: Conn, sql: string, rows: Row[]): T[] {
    const out: T[] = [];
    let i = 0;
    for (const size of BLOCKS) {
      if (rows.length - i < size) continue;
      const stmt = this.statement(conn, sql.replace("{values}", placeholders(size, rows[0].length)));
      while (rows.length - i >= size) {
        const params = size === 1 ? rows[i] : rows.slice(i, i + size).flat();
        if (stmt.reader) out.push(...(stmt.all(params) as T[]));
        else stmt.run(params);
        i += size;
      }
    }
    return out;
  }
}

const BLOCKS = [128, 16, 1];

function placeholders(rows: number, cols: number): string {
  const one = `(${new Array(cols).fill("?").join(", ")})`;
  return new Array(rows).fill(one).join(", ");
}

/** DateTime as Prisma's SQLite adapter stores it (ISO 8601 with an explicit offset). */
export const sqlTime = (d: Date) => d.toISOString().replace("Z", "+00:00");

interface TxLike {
  commit(): Promise<void>;
  rollback(): Promise<void>;
}
interface AdapterLike {
  client: Conn;
  startTransaction(isolationLevel?: string): Promise<TxLike>;
}
interface FactoryLike {
  connect(): Promise<unknown>;
}

/**
 * Wraps the better-sqlite3 adapter factory so the gate gets Prisma's connection, and so
 * Prisma transactions begin IMMEDIATE: with the database
 * writer thread committing every few milliseconds on a connection of its own, a deferred
 * transaction that read first would fail to upgrade to a write (SQLITE_BUSY_SNAPSHOT); an
 * immediate one waits for the write lock (busy timeout) and then cannot be invalidated.
 * Relies on the adapter keeping its connection in `client` (true of 6.19).
 */
export function gateAdapter<F extends FactoryLike>(factory: F, gate: SqliteGate): F {
  const connect = factory.connect.bind(factory);
  factory.connect = async () => {
    const adapter = (await connect()) as AdapterLike;
    if (!adapter.client || typeof adapter.client.transaction !== "function") {
      throw new Error("unexpected SQLite adapter: no better-sqlite3 connection in `client`");
    }
    configureWriter(adapter.client);
    gate.attach(adapter.client);
    const start = adapter.startTransaction.bind(adapter);
    adapter.startTransaction = async (isolationLevel?: string) => {
      if (isolationLevel && isolationLevel !== "SERIALIZABLE") return start(isolationLevel);
      // One Prisma transaction at a time on the connection (as the adapter's own lock does),
      // and none while the writer thread commits.
      const release = await gate.writeLock.acquire();
      try {
        adapter.client.prepare("BEGIN IMMEDIATE").run();
      } catch (e) {
        release();
        throw e;
      }
      const end = async () => release();
      // Queries run on the adapter itself (same connection); only the ending differs.
      return Object.assign(Object.create(adapter) as TxLike, { options: { usePhantomQuery: false }, commit: end, rollback: end });
    };
    return adapter;
  };
  return factory;
}
