import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import type { AppDeps } from "../services/deps";
import { identify } from "../auth/session";
import { UserError } from "../services/errors";
import { createDataFile, createProgram, isSha256 } from "../services/programs/programs";
import { checkStorageRoom, diskShort } from "../services/programs/files";
import { isMissingBlob } from "../store/blobs";
import { BodyBusy, BodyInterrupted, BodyTooLarge, BodyTooSlow, readBody } from "./body";

/**
 * `close`: the request's body was not (all) read, as when an upload is refused; the connection
 * closes after the answer rather than reading the rest only to throw it away.
 */
function reply(res: ServerResponse, status: number, body: unknown, close = false) {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...(close ? { connection: "close" } : {}) });
  res.end(JSON.stringify(body));
}

/**
 * POST /api/programs?name=… and POST /api/data?name=… (raw bytes in the body, signed in or
 * with an API key): programs and data files are stored content-addressed. GET
 * /api/blobs/<sha256> serves stored bytes: to anyone while a job running here reads them, or
 * with `?t=<token>`, the token a task that reads them carried (blobTokens.ts; volunteers are
 * anonymous, and anything a task needs is by nature shown to the volunteer computing it),
 * else to the account that uploaded them only. Anyone else is told there is no such blob, as
 * if it were not stored.
 */
export async function serveUploads(deps: AppDeps, req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
  const path = url.pathname;
  if (req.method === "GET" && path.startsWith("/api/blobs/")) {
    const hash = path.slice("/api/blobs/".length);
    if (!isSha256(hash)) return reply(res, 400, { error: "Blobs are named by their sha256 (64 hex digits)." }), true;
    if (!deps.coordinator.readsBlob(hash, url.searchParams.get("t")) && !(await ownsBlob(deps, req, hash))) return reply(res, 404, { error: `No blob ${hash}.` }), true;
    // Streamed from the store: a data file may be 64 MiB, and anyone with its hash may ask.
    let blob: Awaited<ReturnType<typeof deps.blobs.open>>;
    try {
      blob = await deps.blobs.open(hash);
    } catch (e) {
      // Any other failure (the store is away) is the server's: a 500, logged by server/app.ts.
      if (isMissingBlob(e)) return reply(res, 404, { error: `No blob ${hash}.` }), true;
      throw e;
    }
    res.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-length": blob.bytes,
      // Content-addressed: the bytes behind a hash never change. Private: not every caller may have them.
      "cache-control": "private, max-age=31536000, immutable",
      "x-content-type-options": "nosniff",
    });
    await pipeline(blob.stream, res).catch(() => undefined);
    return true;
  }
  if (req.method !== "POST" || (path !== "/api/programs" && path !== "/api/data")) return false;
  const who = await identify(deps.db, req, deps.env.NEXTAUTH_SECRET);
  if (!who.user) return reply(res, 401, { error: who.error ?? "Sign in (or pass an API key) to upload." }, true), true;
  const limit = path === "/api/programs" ? deps.env.MAX_PROGRAM_BYTES : deps.env.MAX_DATA_BYTES;
  const short = await diskShort(deps, Number(req.headers["content-length"]) || 0);
  if (short) return reply(res, 507, { error: short }, true), true;
  const room = admit(deps, who.user.id);
  if (typeof room === "string") {
    res.setHeader("retry-after", "2");
    return reply(res, room === "busy" ? 503 : 429, {
      error: room === "busy" ? "The server is receiving other uploads; try again in a few seconds." : `At most ${UPLOADS_PER_ACCOUNT} of your uploads are received at once; wait for one to finish.`,
    }, true), true;
  }
  try {
    // A data file whose declared length is past the account's quota is refused before a byte
    // is read, unless the account has a file of that size (the same bytes again take no room).
    const declared = Number(req.headers["content-length"]);
    if (path === "/api/data" && declared > 0 && declared <= limit) await checkStorageRoom(deps, who.user.id, declared, { unlessSize: declared });
    const bytes = await readBody(req, limit, { take: room.take, minRate: deps.env.UPLOAD_MIN_BYTES_PER_SECOND });
    if (bytes.length === 0) return reply(res, 400, { error: "The upload is empty." }), true;
    const upload = { name: url.searchParams.get("name") ?? "", bytes, asCsv: url.searchParams.get("as") === "csv" };
    const body = path === "/api/programs" ? await createProgram(deps, who.user.id, upload) : await createDataFile(deps, who.user.id, upload);
    reply(res, 201, body);
  } catch (e) {
    // Anything else is the server's own failure: server/app.ts answers 500 and logs it.
    if (e instanceof BodyTooLarge) reply(res, 413, { error: e.message }, true);
    else if (e instanceof BodyBusy) {
      res.setHeader("retry-after", "2");
      reply(res, 503, { error: e.message }, true);
    } else if (e instanceof BodyTooSlow) reply(res, 408, { error: e.message }, true);
    else if (e instanceof BodyInterrupted) reply(res, 400, { error: e.message }, true);
    else if (e instanceof UserError) {
      const status = e.code === "NOT_FOUND" ? 404 : e.code === "PAYLOAD_TOO_LARGE" ? 413 : 400;
      reply(res, status, { error: e.message }, !req.readableEnded);
    }
    else throw e;
  } finally {
    room.release();
  }
  return true;
}

/**
 * Uploads are read whole into memory (then hashed and stored), so the bytes received at once
 * are bounded (UPLOAD_MEMORY_BYTES) and so are one account's uploads at a time: 48 uploads of
 * 64 MiB at once, answered 201 each, took the server from 0.3 to 5.9 GB and its health checks
 * to 86 s. The bytes are counted as they arrive, not by the declared length: three uploads
 * declaring 160 MiB and trickling a byte every 10 s kept everyone else's answered 503 for five
 * minutes. An upload must also keep coming at UPLOAD_MIN_BYTES_PER_SECOND (408 otherwise).
 */
const UPLOADS_PER_ACCOUNT = 2;
const receiving = new WeakMap<AppDeps, { bytes: number; byAccount: Map<string, number> }>();

function admit(deps: AppDeps, account: string): "busy" | "yours" | { take(bytes: number): boolean; release(): void } {
  let r = receiving.get(deps);
  if (!r) receiving.set(deps, (r = { bytes: 0, byAccount: new Map() }));
  const state = r;
  const mine = state.byAccount.get(account) ?? 0;
  if (mine >= UPLOADS_PER_ACCOUNT) return "yours";
  if (state.bytes >= deps.env.UPLOAD_MEMORY_BYTES) return "busy";
  state.byAccount.set(account, mine + 1);
  let held = 0;
  return {
    take(bytes) {
      // An upload alone is let in whatever its size: the limit on its size still holds.
      if (state.bytes > held && state.bytes + bytes > deps.env.UPLOAD_MEMORY_BYTES) return false;
      state.bytes += bytes;
      held += bytes;
      return true;
    },
    release() {
      state.bytes -= held;
      held = 0;
      const left = (state.byAccount.get(account) ?? 1) - 1;
      if (left > 0) state.byAccount.set(account, left);
      else state.byAccount.delete(account);
    },
  };
}

/**
 * Whether the caller uploaded this blob: a data file, or a program (its source, or for JS its
 * compiled script and source map, which the portal's trial run fetches).
 */
async function ownsBlob(deps: AppDeps, req: IncomingMessage, hash: string): Promise<boolean> {
  const who = await identify(deps.db, req, deps.env.NEXTAUTH_SECRET);
  if (!who.user) return false;
  const ownerId = who.user.id;
  if (await deps.db.dataFile.findUnique({ where: { hash_ownerId: { hash, ownerId } }, select: { hash: true } })) return true;
  const program = await deps.db.program.findFirst({ where: { OR: [{ hash }, { scriptHash: hash }, { sourceMapHash: hash }] }, select: { hash: true } });
  return !!program && !!(await deps.db.programUpload.findUnique({ where: { hash_ownerId: { hash: program.hash, ownerId } }, select: { hash: true } }));
}
