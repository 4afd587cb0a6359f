/**
 * The running alert manager of a database, so that the alerts services (called by the API)
 * can make it re-read rules right after a change, without AppDeps having to carry it.
 */
import type { Db } from "../../store/prisma";
import type { AlertManager } from "./manager";

const managers = new WeakMap<Db, AlertManager>();

export function registerManager(db: Db, m: AlertManager) {
  managers.set(db, m);
}

export function unregisterManager(db: Db, m: AlertManager) {
  if (managers.get(db) === m) managers.delete(db);
}

export function runningManager(db: Db): AlertManager | undefined {
  return managers.get(db);
}

/** Called after every rule change; a no-op when alerting is not running in this process. */
export async function alertRulesChanged(db: Db): Promise<void> {
  await managers.get(db)?.reload();
}
