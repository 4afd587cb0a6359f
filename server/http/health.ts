import type { ServerResponse } from "node:http";
import type { Db } from "../store/prisma";
import { version } from "../monitoring/version";

const started = Date.now();

/** Liveness plus a database round trip: 200 when both answer, 503 otherwise. */
export async function health(db: Db, res: ServerResponse) {
  let database: "ok" | string = "ok";
  try {
    await db.$queryRawUnsafe("SELECT 1");
  } catch (e) {
    database = (e as Error).message;
  }
  const ok = database === "ok";
  res.writeHead(ok ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify({ status: ok ? "ok" : "error", version, database, uptimeSeconds: Math.round((Date.now() - started) / 1000) }));
}
