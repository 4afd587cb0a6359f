import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import type { AppDeps } from "../services/deps";
import { identify } from "../auth/session";
import { ownedJob } from "../services/jobs/queries";
import { openJobResult, writeUnitOutputs } from "../services/jobs/downloads";
import { UserError } from "../services/errors";

const RESULT_PATH = /^\/api\/jobs\/([A-Za-z0-9_-]{1,64})\/(result|units)\.json$/;

/** GET /api/jobs/:id/result.json (merged) and /units.json (per unit): downloads for the owner, streamed. */
export async function serveResult(deps: AppDeps, req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
  const m = RESULT_PATH.exec(path);
  if (!m) return false;
  const [, jobId, which] = m;
  const reply = (status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const who = await identify(deps.db, req, deps.env.NEXTAUTH_SECRET);
  if (!who.user) return reply(401, { error: who.error ?? "Sign in to download results." }), true;
  const head = (bytes?: number) => res.writeHead(200, {
    "content-type": "application/json",
    "content-disposition": `attachment; filename="tabgrid-${jobId}${which === "units" ? "-units" : ""}.json"`,
    ...(bytes !== undefined ? { "content-length": bytes } : {}),
  });
  try {
    if (which === "units") {
      await ownedJob(deps, who.user, jobId);
      head();
      await writeUnitOutputs(deps, jobId, res);
      return true;
    }
    const result = await openJobResult(deps, who.user, jobId);
    if (result === null) return reply(404, { error: "This job has no result yet." }), true;
    if ("json" in result) {
      head(Buffer.byteLength(result.json));
      res.end(result.json);
    } else {
      head(result.bytes);
      // Destroys the file's stream if the client goes away, and the response if the read fails.
      await pipeline(result.stream, res).catch(() => undefined);
    }
  } catch (e) {
    if (e instanceof UserError) reply(404, { error: e.message });
    else if (res.headersSent) res.destroy(e as Error);
    else throw e;
  }
  return true;
}
