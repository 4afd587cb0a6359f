import { runTask } from "../../worker/runtime/runTask";
import { PI_MS_PER_SAMPLE } from "../../worker/kernels/pi";
import type { ServerMessage, TaskResult, WireTask } from "../../worker/protocol/messages";
import { RawVolunteer } from "./clients";
import { newIdentity, type VolunteerIdentity } from "./server";

// Colluding cheaters as raw sockets. Every colluder returns the same deterministic fake for a
// pi unit, `round(samples·π/4)` points inside, so any two of them on one unit agree with each
// other and disagree with the honest answer. They answer in the same event-loop turn as the
// `tasks` frame arrives (no worker, no macrotask), which wins them the race for work. A
// "sleeper" computes honestly for its first `honestFirst` results, builds a record, then fakes.
// A colluder never reconnects: once banned (an `error` frame with code "banned", then close
// 1008) or closed for any reason, it stays gone.

/** The colluders' shared fake for a pi unit: the expected count of points inside, rounded. */
export function piFake(input: unknown): { inside: number; samples: number } {
  const samples = (input as { samples: number }).samples;
  return { inside: Math.round((samples * Math.PI) / 4), samples };
}

export interface ColluderOptions {
  /** Sent as a bearer token on the upgrade, as `tabgrid volunteer --api-key` does. */
  apiKey: string;
  name?: string;
  identity?: VolunteerIdentity;
  /** Threads claimed in hello: the prefetch window grows with it (default 4). */
  threads?: number;
  /** Results computed honestly before faking (a sleeper); 0 (default) fakes from the start. */
  honestFirst?: number;
}

export interface BanRecord {
  /** Results sent on this socket before the ban was heard of (frame or close). */
  sent: number;
  /** Of those, fakes. */
  fakes: number;
  message: string;
  at: number;
}

export class Colluder {
  readonly name: string;
  readonly honestFirst: number;
  readonly threads: number;
  // What it sent.
  sent = 0;
  honestSent = 0;
  fakeSent = 0;
  /** Fakes sent, with their inputs, to count afterwards how many happened to be right. */
  readonly fakes: Array<{ taskId: string; input: unknown; output: unknown }> = [];
  // What it heard.
  tasksReceived = 0;
  accepted = 0;
  rejected = 0;
  creditedValid = 0;
  creditedInvalid = 0;
  /** Millicredits the server said it earned (from `credit` frames). */
  creditsTold = 0;
  revoked = 0;
  interactive = 0;
  readonly errors: Array<{ code: string; message: string }> = [];
  welcome: Extract<ServerMessage, { type: "welcome" }> | undefined;
  ban: BanRecord | undefined;
  closed: { code: number; reason: string } | undefined;

  private constructor(readonly raw: RawVolunteer, opts: ColluderOptions) {
    this.name = opts.name ?? raw.identity.volunteerId;
    this.honestFirst = opts.honestFirst ?? 0;
    this.threads = opts.threads ?? 4;
    raw.ws.on("message", (data) => this.onMessage(data.toString()));
    raw.ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      if (code === 1008 && reason.toString() === "banned") this.markBanned("closed 1008 banned");
    });
  }

  get identity(): VolunteerIdentity {
    return this.raw.identity;
  }

  get volunteerId(): string {
    return this.raw.identity.volunteerId;
  }

  /** Connects with the API key, says hello and waits for the welcome. */
  static async connect(url: string, opts: ColluderOptions): Promise<Colluder> {
    const raw = await RawVolunteer.connect(url, { identity: opts.identity ?? newIdentity(), headers: { authorization: `Bearer ${opts.apiKey}` } });
    const c = new Colluder(raw, opts);
    raw.hello(c.threads, { name: c.name });
    c.welcome = await raw.next("welcome", 0, 10_000);
    return c;
  }

  /** Still connected and not banned: it answers whatever it is sent. */
  get active(): boolean {
    return !this.ban && !this.closed && this.raw.ws.readyState === this.raw.ws.OPEN;
  }

  private markBanned(message: string) {
    if (this.ban) return;
    this.ban = { sent: this.sent, fakes: this.fakeSent, message, at: Date.now() };
  }

  private onMessage(text: string) {
    const m = JSON.parse(text) as ServerMessage;
    switch (m.type) {
      case "tasks":
        this.tasksReceived += m.tasks.length;
        this.answer(m.tasks);
        break;
      case "ack":
        this.accepted += m.accepted.length;
        this.rejected += m.rejected.length;
        break;
      case "credit":
        this.creditedValid += m.valid.length;
        this.creditedInvalid += m.invalid.length;
        this.creditsTold += m.credits;
        break;
      case "revoke":
        // Nothing to drop: every task was answered the moment it arrived.
        this.revoked += m.taskIds.length;
        break;
      case "error":
        this.errors.push({ code: m.code, message: m.message });
        if (m.code === "banned") this.markBanned(m.message);
        break;
      case "interactive":
        // Calculator tasks are not part of the attack; left unanswered (the server retries elsewhere).
        this.interactive++;
        break;
      default:
        break;
    }
  }

  /** Answers a whole `tasks` frame at once, synchronously, in one `results` frame. */
  private answer(tasks: WireTask[]) {
    if (!this.active) return;
    const results: TaskResult[] = [];
    for (const t of tasks) {
      if (this.sent + results.length < this.honestFirst || t.kernel !== "pi") {
        const r = runTask(t);
        results.push({ taskId: t.taskId, output: r.output, ms: r.ms });
        this.honestSent++;
      } else {
        const output = piFake(t.input);
        // Claims the time an honest reference machine would take: reported times prove nothing.
        results.push({ taskId: t.taskId, output, ms: output.samples * PI_MS_PER_SAMPLE });
        this.fakes.push({ taskId: t.taskId, input: t.input, output });
        this.fakeSent++;
      }
    }
    this.sent += results.length;
    this.raw.send({ type: "results", results });
  }

  /** Closes its socket (if still open); it never comes back. */
  async close() {
    if (this.raw.ws.readyState === this.raw.ws.CONNECTING || this.raw.ws.readyState === this.raw.ws.OPEN) {
      this.raw.ws.close();
      await this.raw.waitClosed().catch(() => this.raw.ws.terminate());
    }
  }
}
