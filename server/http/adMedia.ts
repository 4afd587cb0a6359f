import type { IncomingMessage, ServerResponse } from "node:http";
import type { AppDeps } from "../services/deps";
import { identify } from "../auth/session";
import { isSha256 } from "../services/programs/programs";
import { MEDIA_TYPE } from "../services/ads/creatives";
import { isMissingBlob } from "../store/blobs";
import { BodyTooLarge, readBody } from "./body";

function reply(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}

/**
 * POST /api/ads/media (admins; raw bytes, Content-Type image/* or video/*): stores an ad's
 * media in the blob store and answers { mediaHash, mimeType, size }.
 * GET /api/ads/media/<sha256>: serves a creative's media with its own content type (blobs
 * are served as octet-stream, which an <img> of SVG won't render).
 */
export async function serveAdMedia(deps: AppDeps, req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> {
  if (req.method === "GET" && pathname.startsWith("/api/ads/media/")) {
    const hash = pathname.slice("/api/ads/media/".length);
    const creative = isSha256(hash) ? await deps.db.adCreative.findFirst({ where: { mediaHash: hash }, select: { mimeType: true } }) : null;
    if (!creative?.mimeType) return reply(res, 404, { error: "No such ad media." }), true;
    let bytes: Buffer;
    try {
      bytes = await deps.blobs.get(hash);
    } catch (e) {
      if (isMissingBlob(e)) return reply(res, 404, { error: "No such ad media." }), true;
      throw e;
    }
    res.writeHead(200, {
      "content-type": creative.mimeType,
      "content-length": bytes.length,
      "cache-control": "public, max-age=31536000, immutable",
      "x-content-type-options": "nosniff",
      // An SVG opened directly must not run scripts.
      "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; media-src 'self'",
    });
    res.end(bytes);
    return true;
  }
  if (pathname !== "/api/ads/media") return false;
  if (req.method !== "POST") return reply(res, 405, { error: "POST the media bytes." }), true;
  const who = await identify(deps.db, req, deps.env.NEXTAUTH_SECRET);
  if (!who.user) return reply(res, 401, { error: who.error ?? "Sign in to upload." }), true;
  if (who.user.role !== "admin") return reply(res, 403, { error: "Admins only." }), true;
  const mimeType = (req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
  if (!MEDIA_TYPE.test(mimeType)) {
    return reply(res, 415, { error: `Ads are images (png, jpeg, gif, webp, svg) or videos (mp4, webm, ogg); got "${mimeType || "no content type"}".` }), true;
  }
  try {
    const bytes = await readBody(req, deps.env.ADS_MAX_MEDIA_BYTES);
    if (bytes.length === 0) return reply(res, 400, { error: "The upload is empty." }), true;
    const mediaHash = await deps.blobs.put(bytes);
    reply(res, 201, { mediaHash, mimeType, size: bytes.length });
  } catch (e) {
    if (e instanceof BodyTooLarge) reply(res, 413, { error: e.message });
    else throw e;
  }
  return true;
}
