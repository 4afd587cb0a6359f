import type { ServerResponse } from "node:http";
import { once } from "node:events";
import type { Readable } from "node:stream";
import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { hotStore } from "../../store/hotStore";
import { OUTPUT_PAGE } from "../../store/outputPage";
import { ownedJob, type Viewer } from "./queries";

// A job's result and its units' outputs may be hundreds of MB (a unit's output is up to
// 4 MiB, a job up to 10,000 units). Downloads stream them a page at a time; the API answers
// only what fits in one reply. units.json read every output through the query engine, parsed
// and stringified them: one request for a job of 300 outputs of 4 MB held ~4 GB.

/**
 * Results and outputs larger than this are downloaded (result.json, units.json), not answered
 * by the API: an answer is parsed and written again on the event loop, in one piece (at 32 MiB,
 * eight callers asking for one 30 MB result in a loop held the server ~1 s at each call).
 */
export const MAX_API_OUTPUT_BYTES = 4 * 2 ** 20;
/** Units per page of a units.json download: at most 64 MiB of outputs in memory at once. */
const UNITS_PER_PAGE = 16;

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** The merged result: inline JSON text, a stream of a stored one, or null while the job has none. */
export async function openJobResult(deps: AppDeps, viewer: Viewer, jobId: string): Promise<{ json: string } | { stream: Readable; bytes: number } | null> {
  await ownedJob(deps, viewer, jobId);
  const row = await deps.db.job.findUnique({ where: { id: jobId }, select: { result: true, resultBlob: true } });
  if (row?.result) return { json: row.result };
  if (row?.resultBlob) return deps.blobs.open(row.resultBlob);
  return null;
}

/** The merged result as JSON text for the API, or null while the job has none; a large one is refused with where to download it. */
export async function jobResultJson(deps: AppDeps, viewer: Viewer, jobId: string): Promise<string | null> {
  const r = await openJobResult(deps, viewer, jobId);
  if (!r || "json" in r) return r?.json ?? null;
  if (r.bytes > MAX_API_OUTPUT_BYTES) {
    r.stream.destroy();
    throw new UserError("UNPROCESSABLE_CONTENT", `This result is ${mib(r.bytes)}: download it from /api/jobs/${jobId}/result.json (tabgrid job ${jobId} --output FILE does).`);
  }
  const chunks: Buffer[] = [];
  for await (const c of r.stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Each done unit's output, for the API; refused with where to download them when they are large. */
export async function unitOutputs(deps: AppDeps, viewer: Viewer, jobId: string) {
  await ownedJob(deps, viewer, jobId);
  const store = hotStore(deps.db);
  const bytes = await store.outputBytes(jobId);
  if (bytes > MAX_API_OUTPUT_BYTES) {
    throw new UserError("UNPROCESSABLE_CONTENT", `The units' outputs hold ${mib(bytes)}: download them from /api/jobs/${jobId}/units.json (tabgrid job ${jobId} --units FILE does).`);
  }
  const out: Array<{ index: number; round?: number; output: unknown }> = [];
  for await (const page of store.outputPages(jobId, OUTPUT_PAGE)) {
    for (const u of page) if (u.done) out.push({ index: u.idx, ...(u.round ? { round: u.round } : {}), output: JSON.parse(u.output!) as unknown });
  }
  return out;
}

/**
 * Writes units.json, `[{"index":0,"output":…},…]`, a few units at a time, each output as it
 * is stored (JSON text), waiting for the client to take each page. Stops if the client goes.
 * The job must be checked as the viewer's first (ownedJob), before the response's head.
 */
export async function writeUnitOutputs(deps: AppDeps, jobId: string, res: ServerResponse) {
  let first = true;
  const write = async (text: string) => {
    if (!res.write(text)) await Promise.race([once(res, "drain"), once(res, "close")]);
  };
  await write("[");
  for await (const page of hotStore(deps.db).outputPages(jobId, UNITS_PER_PAGE)) {
    if (res.destroyed) return;
    let text = "";
    for (const u of page) {
      if (!u.done) continue;
      text += `${first ? "" : ","}{"index":${u.idx},${u.round ? `"round":${u.round},` : ""}"output":${u.output}}`;
      first = false;
    }
    await write(text);
  }
  res.end("]");
}
