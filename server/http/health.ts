import type { ServerResponse } from "node:http";
import type { Db } from "../store/prisma";
import { version } from "../monitoring/version";

const started = Date.now();

/**
 * Liveness plus a database round trip: 200 when both answer, 503 otherwise. The answer says
 * only "error" for a database that fails (it is public); the log gets the reason.
 */
export async function health(db: Db, res: ServerResponse, log: (m: string) => void = console.error) {
  let ok = true;
  try {
    await db.$queryRawUnsafe("SELECT 1");
  } catch (e) {
    ok = false;
    log(`health: the database did not answer: ${(e as Error)?.message ?? String(e)}`);
  }
  res.writeHead(ok ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify({ status: ok ? "ok" : "error", version, database: ok ? "ok" : "error", uptimeSeconds: Math.round((Date.now() - started) / 1000) }));
}
