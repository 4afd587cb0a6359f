import crypto from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Registry } from "prom-client";

/**
 * GET /api/metrics: the Prometheus exposition of this server's registry. Open by default,
 * as Prometheus scrapes without cookies and the numbers name no user, volunteer or job; with
 * METRICS_TOKEN set it requires `Authorization: Bearer <token>` (Prometheus's
 * `authorization: { credentials: … }` scrape setting).
 */
export async function serveMetrics(registry: Registry, token: string | undefined, req: IncomingMessage, res: ServerResponse) {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "application/json" }).end(JSON.stringify({ error: "Method not allowed" }));
    return;
  }
  if (token !== undefined && !bearerMatches(req.headers.authorization, token)) {
    res
      .writeHead(401, { "www-authenticate": 'Bearer realm="metrics"', "content-type": "application/json", "cache-control": "no-store" })
      .end(JSON.stringify({ error: "A valid bearer token is required for /api/metrics." }));
    return;
  }
  const body = await registry.metrics();
  res.writeHead(200, { "content-type": registry.contentType, "cache-control": "no-store" });
  res.end(req.method === "HEAD" ? undefined : body);
}

function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (!m) return false;
  // Compare digests: constant time, and equal lengths whatever was sent.
  const digest = (s: string) => crypto.createHash("sha256").update(s).digest();
  return crypto.timingSafeEqual(digest(m[1]), digest(token));
}
