import type { Db } from "../../store/prisma";
import { hotStore } from "../../store/hotStore";
import type { ReliabilityRow } from "../jobs/batchSql";

/** Reliability rows are keyed "host:<volunteerId>" for hosts and by ledger account id for accounts. */
export const hostKey = (volunteerId: string) => `host:${volunteerId}`;

export const emptyRecord = (id: string): ReliabilityRow => ({
  id, consecutiveValid: 0, consecutiveInvalid: 0, valid: 0, invalid: 0, errors: 0,
  turnaroundMsTotal: 0, turnaroundCount: 0, spotChecks: 0, bannedUntil: null, banReason: null,
});

/** Reliability rows by id (empty records for ids never seen), read raw: hellos come in bursts. */
export async function loadRecords(db: Db, ids: string[]): Promise<Map<string, ReliabilityRow>> {
  const out = new Map(ids.map((id) => [id, emptyRecord(id)]));
  for (const r of await hotStore(db).reliabilityRows(ids)) out.set(r.id, r);
  return out;
}

/** The first ban in force among these records, if any. */
export function activeBan(records: Iterable<ReliabilityRow>, now = new Date()) {
  for (const r of records) {
    if (r.bannedUntil && r.bannedUntil > now) return { id: r.id, until: r.bannedUntil, reason: r.banReason ?? "banned" };
  }
  return null;
}
