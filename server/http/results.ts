import type { IncomingMessage, ServerResponse } from "node:http";
import type { AppDeps } from "../services/deps";
import { identify } from "../auth/session";
import { jobResultJson, unitOutputs } from "../services/jobs/queries";
import { UserError } from "../services/errors";

const RESULT_PATH = /^\/api\/jobs\/([A-Za-z0-9_-]{1,64})\/(result|units)\.json$/;

/** GET /api/jobs/:id/result.json (merged) and /units.json (per unit): downloads for the owner. */
export async function serveResult(deps: AppDeps, req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
  const m = RESULT_PATH.exec(path);
  if (!m) return false;
  const reply = (status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const who = await identify(deps.db, req, deps.env.NEXTAUTH_SECRET);
  if (!who.user) return reply(401, { error: who.error ?? "Sign in to download results." }), true;
  try {
    const json = m[2] === "units" ? JSON.stringify(await unitOutputs(deps, who.user, m[1])) : await jobResultJson(deps, who.user, m[1]);
    if (json === null) return reply(404, { error: "This job has no result yet." }), true;
    res.writeHead(200, {
      "content-type": "application/json",
      "content-disposition": `attachment; filename="tabgrid-${m[1]}${m[2] === "units" ? "-units" : ""}.json"`,
    });
    res.end(json);
  } catch (e) {
    if (e instanceof UserError) reply(404, { error: e.message });
    else throw e;
  }
  return true;
}
