import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { writeBatch, type PersistOp } from "../services/jobs/batchSql";
import { configureWriter, SqliteGate } from "./sqliteGate";

// The database writer thread: its own connection to the SQLite file, writing each group-
// commit batch in one BEGIN IMMEDIATE transaction. Waiting for the write lock (held for a
// moment by a Prisma transaction on the main thread) blocks only this thread.

const { file, busyTimeoutMs } = workerData as { file: string; busyTimeoutMs: number };
const conn = new Database(file, { timeout: busyTimeoutMs });
conn.pragma("journal_mode = WAL");
configureWriter(conn);
const gate = new SqliteGate();
gate.attach(conn);
const write = conn.transaction((ops: PersistOp[]) => writeBatch(gate, conn, ops));

parentPort!.on("message", (msg: { id: number; ops: string } | { id: number; setting: string } | { close: true }) => {
  if ("close" in msg) {
    conn.close();
    parentPort!.close();
    return;
  }
  if ("setting" in msg) {
    // Reads one connection setting (tests check the durability settings this way).
    try {
      if (!/^[a-z_]+$/.test(msg.setting)) throw new Error(`not a setting name: ${msg.setting}`);
      parentPort!.postMessage({ id: msg.id, value: conn.pragma(msg.setting, { simple: true }) });
    } catch (e) {
      parentPort!.postMessage({ id: msg.id, error: (e as Error).message });
    }
    return;
  }
  try {
    write.immediate(JSON.parse(msg.ops) as PersistOp[]);
    parentPort!.postMessage({ id: msg.id });
  } catch (e) {
    // The error's name, code and figures cross the thread (InsufficientCredits: needed,
    // available; SQLite's code says whether the batch failed on its data: dataError.ts).
    const { message, name, code, needed, available } = e as Error & { code?: string; needed?: number; available?: number };
    parentPort!.postMessage({ id: msg.id, error: message, name, code, needed, available });
  }
});
