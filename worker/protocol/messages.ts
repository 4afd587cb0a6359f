import { z } from "zod";
import { checkJsonBounds, FRAME_DEPTH_OVER_OUTPUTS, JSON_MAX_DEPTH, jsonTextTooDeep, VOLUNTEER_OUTPUT_LIMITS } from "./jsonBounds";

// The volunteer wire protocol: JSON text frames over a raw WebSocket at VOLUNTEER_WS_PATH.
// Both ends import these schemas; the server validates every frame it receives.

export const PROTOCOL_VERSION = 2;
export const VOLUNTEER_WS_PATH = "/ws/volunteer";

const id = z.string().min(1).max(200);
export const volunteerIdSchema = z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, "volunteer ids are 8-64 letters, digits, - or _");
export const volunteerTokenSchema = z.string().regex(/^[A-Za-z0-9_-]{16,128}$/, "volunteer tokens are 16-128 url-safe characters");

// ---- volunteer → server -------------------------------------------------------------

export const helloSchema = z.object({
  type: z.literal("hello"),
  protocol: z.number().int(),
  volunteerId: volunteerIdSchema,
  /** Secret proving this client owns volunteerId (so nobody else can claim its credits). */
  token: volunteerTokenSchema,
  /** Worker threads; the server sizes the prefetch window from it. 0 = paused. */
  threads: z.number().int().min(0).max(256),
  agent: z.enum(["browser", "node"]).default("browser"),
  /** The host's name (worker/client/hostName.ts): a default for what it is, or one its owner chose. */
  name: z.string().max(100).optional(),
  /** The owner chose `name` (`tabgrid volunteer --name`): it replaces a name chosen on /account. */
  nameChosen: z.boolean().optional(),
  /**
   * Host speed relative to the reference machine (1.0), from worker/client/benchmark.ts.
   * Self-reported, so the server clamps it and it never decides what anyone is paid.
   */
  benchmark: z.number().positive().max(1e6).optional(),
});

export const capacitySchema = z.object({
  type: z.literal("capacity"),
  threads: z.number().int().min(0).max(256),
});

/**
 * The most a result may say its task took: a day. It is stored as a 32-bit integer; a result
 * saying 3e9 once made every PostgreSQL commit fail, and kept failing, until a restart.
 */
export const MAX_TASK_MS = 86_400_000;
const taskMs = z.number().min(0).max(MAX_TASK_MS);
const TASK_MS_PROBLEM = `ms must be a number of milliseconds from 0 to ${MAX_TASK_MS}`;

export const taskResultSchema = z.union([
  z.object({ taskId: id, output: z.unknown(), ms: taskMs.optional() }),
  z.object({ taskId: id, error: z.string().max(2000) }),
]);

export const resultsSchema = z.object({
  type: z.literal("results"),
  results: z.array(taskResultSchema).min(1).max(10000),
});

/** How busy the volunteer is (every second or two, and on big changes): routes interactive tasks. */
export const loadSchema = z.object({
  type: z.literal("load"),
  /** Share of the CPU in use, 0..1 (browser: busy workers; node: load average per core, or busy share). */
  cpu: z.number().min(0).max(1),
  /** Tasks the volunteer holds (running or waiting). */
  inFlight: z.number().int().min(0).max(100_000),
});

/** The answer to an "interactive" message: a value (with the operations run) or an error. */
export const interactiveResultSchema = z.object({
  type: z.literal("interactive-result"),
  id,
  value: z.unknown().optional(),
  ops: z.array(z.string().max(500)).max(2000).optional(),
  error: z.string().max(2000).optional(),
});

export const clientMessageSchema = z.discriminatedUnion("type", [helloSchema, capacitySchema, resultsSchema, loadSchema, interactiveResultSchema]);

export type Hello = z.infer<typeof helloSchema>;
export type TaskResult = z.infer<typeof taskResultSchema>;
export type ClientMessage = z.infer<typeof clientMessageSchema>;
export type LoadReport = z.infer<typeof loadSchema>;
export type InteractiveResult = z.infer<typeof interactiveResultSchema>;

// ---- server → volunteer -------------------------------------------------------------

export interface WireTask {
  taskId: string;
  jobId: string;
  kernel: string;
  params: unknown;
  input: unknown;
  deadline: number;
  /** Tokens for the blobs the task reads, by hash: GET /api/blobs/<hash>?t=<token> on any node. */
  blobs?: Record<string, string>;
}

export type ServerMessage =
  /** `maxMessageBytes`: the largest frame the server reads (results are split to fit; an output that cannot becomes its task's error). */
  | { type: "welcome"; protocol: number; volunteerId: string; account: string; signedIn: boolean; window: number; maxMessageBytes?: number }
  | { type: "tasks"; tasks: WireTask[] }
  /** Results durably recorded (accepted) or refused; accepted ones still await validation. */
  | { type: "ack"; accepted: string[]; rejected: Array<{ taskId: string; reason: string }> }
  /** Validation settled some of this volunteer's results: valid ones earned `credits` millicredits. */
  | { type: "credit"; valid: string[]; invalid: string[]; credits: number }
  /**
   * How many of this host's results wait for a copy that no volunteer online may compute (one
   * from another account, usually): sent when it changes.
   */
  | { type: "waiting"; results: number }
  /**
   * Blobs (shards) this volunteer will be given units of from the next round on: fetch them now,
   * so that the first of those units does not wait for the download.
   */
  | { type: "prefetch"; blobs: string[]; tokens?: string[] }
  /** Leases taken back (deadline passed, job cancelled): drop the work, don't send it. */
  | { type: "revoke"; taskIds: string[]; reason: string }
  | { type: "error"; code: string; message: string }
  /** A small task to answer at once, outside the task window (reply: "interactive-result"). */
  | { type: "interactive"; id: string; kernel: "calc"; input: unknown };

/** Parses one frame, returning a readable reason instead of throwing. */
/**
 * `shallow`: the text is known to nest no deeper than a frame may (a thread looked:
 * server/coordinator/outputDigests.ts), so it is not scanned again.
 */
export function parseClientMessage(raw: string, shallow = false): { ok: true; msg: ClientMessage } | { ok: false; error: string } {
  // A frame of a kilobyte or less parses in well under a millisecond however it nests.
  const deepest = JSON_MAX_DEPTH + FRAME_DEPTH_OVER_OUTPUTS;
  if (!shallow && raw.length > 1024 && jsonTextTooDeep(raw, deepest)) return { ok: false, error: `message nests deeper than ${deepest} levels` };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, error: "message is not valid JSON" };
  }
  const fast = fastResults(json);
  if (fast && "problem" in fast) return { ok: false, error: `invalid message: ${fast.problem}` };
  if (fast) return { ok: true, msg: fast };
  const parsed = clientMessageSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, error: `invalid message: ${issue.path.join(".") || "(root)"}: ${issue.message}` };
  }
  const msg = parsed.data;
  if (msg.type === "results") return { ok: true, msg: { type: "results", results: msg.results.map(bounded) } };
  if (msg.type === "interactive-result" && msg.value !== undefined && checkJsonBounds(msg.value, VOLUNTEER_OUTPUT_LIMITS) !== null) {
    // No number (all an interactive answer is) is over the bounds: the answer is malformed,
    // and asked of another volunteer.
    return { ok: true, msg: { ...msg, value: undefined } };
  }
  return { ok: true, msg };
}

/** Why an output is refused before anything walks it, or null when it is within bounds. */
function outputProblem(output: unknown): string | null {
  const why = checkJsonBounds(output, VOLUNTEER_OUTPUT_LIMITS);
  return why === null ? null : `output ${why}`;
}

/**
 * An output over the bounds (VOLUNTEER_OUTPUT_LIMITS) becomes that task's error result, which
 * counts against the volunteer; the other results of its frame stand.
 */
function bounded(r: TaskResult): TaskResult {
  if (!("output" in r)) return r;
  const why = outputProblem(r.output);
  return why === null ? r : { taskId: r.taskId, error: why };
}

/**
 * The `results` frame, tens of thousands a second under load, checked by hand with the same
 * rules (and the same normalised shape) as resultsSchema. Anything it does not accept goes
 * through the schema, which gives the reason.
 */
function fastResults(json: unknown): ClientMessage | { problem: string } | undefined {
  const frame = json as { type?: unknown; results?: unknown } | null;
  if (!frame || frame.type !== "results" || !Array.isArray(frame.results)) return undefined;
  const items = frame.results as unknown[];
  if (items.length < 1 || items.length > 10000) return undefined;
  const results: TaskResult[] = new Array(items.length);
  for (let i = 0; i < items.length; i++) {
    const r = items[i] as { taskId?: unknown; output?: unknown; ms?: unknown; error?: unknown } | null;
    if (!r || typeof r !== "object" || Array.isArray(r)) return undefined;
    const taskId = r.taskId;
    if (typeof taskId !== "string" || taskId.length < 1 || taskId.length > 200) return undefined;
    // The schema's first branch needs the key `output` (any value) and a valid `ms` if given:
    // said here, where the schema's union would only say "Invalid input".
    const badMs = r.ms !== undefined && !(typeof r.ms === "number" && r.ms >= 0 && r.ms <= MAX_TASK_MS);
    const hasOutput = Object.hasOwn(r, "output") && !badMs;
    if (hasOutput) {
      const output = r.output;
      const why = outputProblem(output);
      if (why !== null) results[i] = { taskId, error: why };
      else results[i] = r.ms === undefined ? { taskId, output } : { taskId, output, ms: r.ms as number };
    }
    else if (typeof r.error === "string" && r.error.length <= 2000) results[i] = { taskId, error: r.error };
    else if (badMs && Object.hasOwn(r, "output")) return { problem: `results.${i}.${TASK_MS_PROBLEM}` };
    else return undefined;
  }
  return { type: "results", results };
}
