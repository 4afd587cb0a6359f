import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import WebSocket from "ws";
import { parse, connection, connectionOptions, intOption, plural, UsageError } from "../args";
import { VolunteerClient, type SocketLike } from "../../worker/client/volunteerClient";
import { createNodePool, programSandbox } from "../../worker/node/pool";
import { VOLUNTEER_WS_PATH } from "../../worker/protocol/messages";
import { BlobCache, prepareTask } from "../../worker/client/prepareTask";
import { httpGetBytes } from "../../worker/node/httpGetBytes";
import { cliHostName, hostNameSchema } from "../../worker/client/hostName";

interface Identity {
  volunteerId: string;
  token: string;
}

/** A saved identity keeps anonymous credits claimable across runs; without a file each run is new. */
function loadIdentity(file: string | undefined): Identity {
  const fresh = () => ({ volunteerId: crypto.randomBytes(12).toString("base64url"), token: crypto.randomBytes(24).toString("base64url") });
  if (!file) return fresh();
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as Identity;
  } catch {
    const id = fresh();
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(id), { mode: 0o600 });
    return id;
  }
}

export async function volunteer(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    ...connectionOptions, threads: { type: "string" }, throttle: { type: "string" }, identity: { type: "string" }, name: { type: "string" },
  });
  // Several servers (the nodes of a cluster, comma-separated): tried in turn after each disconnect.
  const urls = (values.url ?? process.env.TABGRID_URL ?? "").split(",").map((u) => u.trim()).filter(Boolean);
  const conns = (urls.length ? urls : [undefined]).map((url) => connection({ ...values, url }));
  const conn = conns[0];
  const threads = intOption(values.threads, "threads", Math.max(1, os.availableParallelism() - 1))!;
  if (threads < 1 || threads > 256) throw new UsageError("--threads must be between 1 and 256");
  const throttle = values.throttle === undefined ? 1 : Number(values.throttle);
  if (!(throttle > 0 && throttle <= 1)) throw new UsageError("--throttle is the share of time to compute, between 0 and 1 (e.g. 0.5)");
  const chosenName = values.name === undefined ? undefined : hostNameSchema.safeParse(values.name);
  if (chosenName && !chosenName.success) throw new UsageError(`--name: ${chosenName.error.issues[0].message}`);
  const id = loadIdentity(values.identity ?? process.env.TABGRID_VOLUNTEER_IDENTITY);
  const name = chosenName?.data ?? cliHostName(process.platform, id.volunteerId);
  const wsUrls = conns.map((c) => `${c.url.replace(/^http/, "ws")}${VOLUNTEER_WS_PATH}`);
  // Blobs come from the node connected now (every node of a cluster serves them all), by node:http.
  const blobs = new BlobCache(() => conns[Math.max(0, wsUrls.indexOf(client.currentUrl()))].url, {
    download: httpGetBytes, sha256: (bytes) => crypto.createHash("sha256").update(bytes).digest("hex"),
  });
  // Node loads its HTTP client at the first request (~10-20 ms of CPU): done now, not in the
  // first round of a job, where every volunteer fetches its shards at once.
  void httpGetBytes(`${conn.url}/api/health`, {}).catch(() => undefined);

  const client: VolunteerClient = new VolunteerClient({
    url: wsUrls,
    ...id,
    threads,
    agent: "node",
    name,
    nameChosen: chosenName !== undefined,
    connect: (u) => new WebSocket(u, { headers: conn.apiKey ? { authorization: `Bearer ${conn.apiKey}` } : {} }) as unknown as SocketLike,
    createPool: (n) => createNodePool({ threads: n, throttle, resourceLimits: { maxOldGenerationSizeMb: 512 }, warmPrograms: true }),
    log: (m) => console.error(`[volunteer] ${m}`),
    // Load per core of the whole machine (not just our threads); the busy share counts too.
    systemLoad: () => Math.min(1, os.loadavg()[0] / os.availableParallelism()),
    prepare: (task) => prepareTask(task, blobs),
    prefetch: (hash, token) => blobs.prefetch(hash, token),
    // Banned, a revoked key, a refused hello: nothing will change by waiting; the command ends (exit status 1).
    onRefused: () => refused(),
  });
  let refused = () => {};
  let last = 0;
  let waiting = 0;
  client.subscribe((s) => {
    if (s.tasksDone !== last && s.tasksDone % 10 === 0) console.error(`[volunteer] ${plural(s.tasksDone, "task")} done, ${plural(s.earned / 1000, "credit")} earned`);
    last = s.tasksDone;
    if (s.waiting !== waiting) {
      waiting = s.waiting;
      // Said once per change: results that nobody online may confirm are neither lost nor paid yet.
      if (waiting > 0) console.error(`[volunteer] ${plural(waiting, "result")} of yours ${waiting === 1 ? "waits" : "wait"} for a volunteer from another account to confirm ${waiting === 1 ? "it" : "them"}`);
      else console.error("[volunteer] none of your results waits for confirmation any more");
    }
  });
  client.start();
  console.error(`[volunteer] ${plural(threads, "thread")} computing for ${conns.map((c) => c.url).join(" or ")} as "${name}"; Ctrl-C to stop`);
  console.error(`[volunteer] ${programSandbox().description}`);
  const status = await new Promise<number>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => resolve(0));
    refused = () => resolve(1);
  });
  const s = client.snapshot();
  client.stop();
  console.error(`[volunteer] stopped after ${plural(s.tasksDone, "task")}, ${plural(s.earned / 1000, "credit")} earned`);
  return status;
}
