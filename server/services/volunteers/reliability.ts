import type { Db } from "../../store/prisma";
import type { ReliabilityRow } from "../jobs/persist";

/** Reliability rows are keyed "host:<volunteerId>" for hosts and by ledger account id for accounts. */
export const hostKey = (volunteerId: string) => `host:${volunteerId}`;

export const emptyRecord = (id: string): ReliabilityRow => ({
  id, consecutiveValid: 0, consecutiveInvalid: 0, valid: 0, invalid: 0, errors: 0,
  turnaroundMsTotal: 0, turnaroundCount: 0, bannedUntil: null, banReason: null,
});

export async function loadRecords(db: Db, ids: string[]): Promise<Map<string, ReliabilityRow>> {
  const rows = await db.reliability.findMany({ where: { id: { in: ids } } });
  const out = new Map(ids.map((id) => [id, emptyRecord(id)]));
  for (const { updatedAt: _, ...row } of rows) out.set(row.id, row);
  return out;
}

/** The first ban in force among these records, if any. */
export function activeBan(records: Iterable<ReliabilityRow>, now = new Date()) {
  for (const r of records) {
    if (r.bannedUntil && r.bannedUntil > now) return { id: r.id, until: r.bannedUntil, reason: r.banReason ?? "banned" };
  }
  return null;
}
