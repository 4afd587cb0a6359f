import crypto from "node:crypto";
import { EventEmitter } from "node:events";
import type { WebSocket } from "ws";
import { Scheduler } from "../scheduler";
import type { ExpiredLease, JobSpec, TaskAssignment } from "../scheduler/types";
import { getKernel } from "../../worker/kernels";
import { PROTOCOL_VERSION, parseClientMessage, type Hello, type TaskResult, type WireTask } from "../../worker/protocol/messages";
import { GroupCommitter } from "../store/groupCommit";
import type { BlobStore } from "../store/blobs";
import type { Db } from "../store/prisma";
import { persistBatch, type PersistOp } from "../services/jobs/persist";
import { registerVolunteer } from "../services/volunteers/volunteers";
import { anonAccount, userAccount } from "../services/credits/accounts";
import { Throughput } from "./progress";
import { send, windowFor, type VolunteerConn } from "./connection";

interface JobMeta {
  ownerId: string;
  kernel: string;
  pays: Map<string, number>;
  throughput: Throughput;
}

export interface CoordinatorOptions {
  db: Db;
  blobs: BlobStore;
  commitIntervalMs: number;
  log?: (msg: string) => void;
  /** Injected for tests; the core scheduler never reads a clock itself. */
  now?: () => number;
}

const HELLO_TIMEOUT_MS = 10_000;
const MAX_BAD_MESSAGES = 20;

/**
 * The live side of the server: owns the scheduler, the volunteer sockets and the group
 * commit of results. Emits "job" (jobId) when a job's progress or state changed and
 * "volunteers" when the set of volunteers changed.
 */
export class Coordinator extends EventEmitter {
  // A fresh epoch per process keeps task ids from before a restart from matching new ones.
  readonly scheduler = new Scheduler({ epoch: Date.now().toString(36) });
  private readonly conns = new Map<string, VolunteerConn>();
  private readonly jobs = new Map<string, JobMeta>();
  private readonly writer: GroupCommitter<PersistOp>;
  private readonly now: () => number;
  private leaseTimer: NodeJS.Timeout | undefined;
  private leaseTimerAt = Infinity;
  private connSeq = 0;
  private readonly throughput = new Throughput();
  private closed = false;

  constructor(private readonly opts: CoordinatorOptions) {
    super();
    this.setMaxListeners(0);
    this.now = opts.now ?? Date.now;
    this.writer = new GroupCommitter((ops) => persistBatch(opts.db, opts.blobs, ops), {
      intervalMs: opts.commitIntervalMs,
      maxBatch: 500,
      onError: (e) => this.log(`commit failed, will retry: ${(e as Error).message}`),
    });
  }

  private log(msg: string) {
    this.opts.log?.(`[coordinator] ${msg}`);
  }

  /** Rebuilds the queue from the database after a start: unfinished units go back to the queue. */
  async recover(): Promise<number> {
    const jobs = await this.opts.db.job.findMany({
      where: { state: "running" },
      select: { id: true, ownerId: true, kernel: true, params: true, leaseMs: true, createdAt: true },
      orderBy: { createdAt: "asc" },
    });
    for (const job of jobs) {
      const units = await this.opts.db.workUnit.findMany({
        where: { jobId: job.id },
        select: { id: true, idx: true, input: true, work: true, pay: true, done: true },
        orderBy: { idx: "asc" },
      });
      this.addJob(
        {
          id: job.id, kernel: job.kernel, params: JSON.parse(job.params), leaseMs: job.leaseMs, maxErrors: 3,
          units: units.map((u) => ({ id: u.id, index: u.idx, input: JSON.parse(u.input), work: u.work })),
        },
        job.ownerId,
        new Map(units.map((u) => [u.id, u.pay])),
        units.filter((u) => u.done).map((u) => u.id),
      );
    }
    if (jobs.length) this.log(`recovered ${jobs.length} running job(s)`);
    return jobs.length;
  }

  addJob(spec: JobSpec, ownerId: string, pays: Map<string, number>, done: string[] = []) {
    this.scheduler.addJob(spec, this.now(), done);
    this.jobs.set(spec.id, { ownerId, kernel: spec.kernel, pays, throughput: new Throughput() });
    if (this.scheduler.jobState(spec.id) === "completed") this.finish(spec.id, "completed");
    else this.dispatchAll();
    this.emit("job", spec.id);
  }

  /** Stops dispatch, takes leases back and refunds the unused escrow once committed. */
  async cancelJob(jobId: string): Promise<boolean> {
    if (this.scheduler.jobState(jobId) !== "running") return false;
    const freed = this.scheduler.cancelJob(jobId);
    this.revoke(freed, "job cancelled");
    await this.finish(jobId, "cancelled");
    return true;
  }

  progress(jobId: string) {
    const p = this.scheduler.progress(jobId);
    const meta = this.jobs.get(jobId);
    if (!p || !meta) return undefined;
    const rate = meta.throughput.rate(this.now());
    const left = p.total - p.done;
    return { ...p, throughput: rate, etaSeconds: left === 0 ? 0 : rate > 0 ? left / rate : null };
  }

  /** The public cluster summary (CLI `status`, volunteer page). */
  status() {
    const s = this.scheduler.stats();
    const ids = new Set<string>();
    let threads = 0;
    for (const c of this.conns.values()) {
      ids.add(c.volunteerId);
      threads += c.threads;
    }
    return {
      volunteers: ids.size, connections: this.conns.size, threads, tasksQueued: s.queued, tasksRunning: s.leased,
      jobsRunning: s.runningJobs, tasksPerSecond: this.throughput.rate(this.now()), pendingCommits: this.writer.size,
    };
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    // Any change to jobs or volunteers is also a change to the cluster summary.
    if (event !== "tick") super.emit("tick");
    return super.emit(event, ...args);
  }

  volunteers() {
    return [...this.conns.values()].map((c) => ({
      key: c.key, volunteerId: c.volunteerId, userId: c.userId, agent: c.agent, threads: c.threads,
      connectedAt: c.connectedAt, tasksDone: c.tasksDone, earned: c.earned, held: this.scheduler.heldBy(c.key).length,
    }));
  }

  // ---- volunteer sockets ------------------------------------------------------------

  /** Takes over a freshly upgraded volunteer socket; `userId` comes from its session or API key. */
  handleConnection(ws: WebSocket, identity: { userId: string | null }) {
    let conn: VolunteerConn | undefined;
    let bad = 0;
    let helloPending = false;
    const helloTimer = setTimeout(() => {
      if (!conn) ws.close(1008, "expected a hello message");
    }, HELLO_TIMEOUT_MS);

    ws.on("message", (data, isBinary) => {
      const reject = (code: string, message: string) => {
        send(ws, { type: "error", code, message });
        if (++bad >= MAX_BAD_MESSAGES) ws.close(1008, "too many invalid messages");
      };
      if (isBinary) return reject("bad-message", "frames must be JSON text");
      const parsed = parseClientMessage(data.toString());
      if (!parsed.ok) return reject("bad-message", parsed.error);
      const msg = parsed.msg;
      if (msg.type === "hello") {
        if (conn || helloPending) return reject("bad-message", "hello was already received");
        helloPending = true;
        this.hello(ws, msg, identity.userId).then(
          (c) => {
            clearTimeout(helloTimer);
            conn = c;
            if (ws.readyState !== ws.OPEN) this.drop(c);
          },
          (e: Error) => {
            send(ws, { type: "error", code: "hello-refused", message: e.message });
            ws.close(1008, e.message.slice(0, 120));
          },
        );
        return;
      }
      if (!conn) return reject("bad-message", "send hello first");
      if (msg.type === "capacity") {
        conn.threads = msg.threads;
        this.scheduler.setWindow(conn.key, windowFor(msg.threads));
        this.dispatch(conn);
      } else {
        this.results(conn, msg.results);
      }
    });
    ws.on("close", () => {
      clearTimeout(helloTimer);
      if (conn) this.drop(conn);
    });
    ws.on("error", () => ws.terminate());
  }

  private async hello(ws: WebSocket, msg: Hello, userId: string | null): Promise<VolunteerConn> {
    if (msg.protocol !== PROTOCOL_VERSION) {
      throw new Error(`protocol ${msg.protocol} is not supported; this server speaks ${PROTOCOL_VERSION}`);
    }
    await registerVolunteer(this.opts.db, { volunteerId: msg.volunteerId, token: msg.token, userId, name: msg.name });
    const conn: VolunteerConn = {
      key: `${msg.volunteerId}~${++this.connSeq}`,
      volunteerId: msg.volunteerId,
      accountId: userId ? userAccount(userId) : anonAccount(msg.volunteerId),
      userId,
      agent: msg.agent,
      threads: msg.threads,
      connectedAt: this.now(),
      earned: 0,
      tasksDone: 0,
      ws,
    };
    if (ws.readyState !== ws.OPEN || this.closed) return conn;
    this.conns.set(conn.key, conn);
    this.scheduler.addVolunteer(conn.key, { window: windowFor(msg.threads) });
    send(ws, {
      type: "welcome", protocol: PROTOCOL_VERSION, volunteerId: msg.volunteerId, account: conn.accountId,
      signedIn: !!userId, window: windowFor(msg.threads),
    });
    this.log(`volunteer ${conn.key} joined (${msg.agent}, ${msg.threads} threads${userId ? ", signed in" : ""})`);
    this.emit("volunteers");
    this.dispatch(conn);
    return conn;
  }

  private drop(conn: VolunteerConn) {
    if (!this.conns.delete(conn.key)) return;
    const requeued = this.scheduler.removeVolunteer(conn.key, this.now());
    this.log(`volunteer ${conn.key} left; ${requeued.length} task(s) re-queued`);
    this.emit("volunteers");
    if (requeued.length) this.dispatchAll();
  }

  private results(conn: VolunteerConn, results: TaskResult[]) {
    const now = this.now();
    const accepted: Array<{ taskId: string; pay: number; commit: Promise<void> }> = [];
    const rejected: Array<{ taskId: string; reason: string }> = [];
    const touched = new Set<string>();
    for (const r of results) {
      const jobId = this.scheduler.jobOf(r.taskId);
      const kernelName = jobId ? this.jobs.get(jobId)?.kernel : undefined;
      const kernel = kernelName ? getKernel(kernelName) : undefined;
      let error = "error" in r ? r.error : undefined;
      if (!error && kernel) {
        const out = kernel.output.safeParse((r as { output: unknown }).output);
        if (!out.success) error = `invalid output: ${out.error.issues[0].path.join(".")}: ${out.error.issues[0].message}`;
      }
      if (error !== undefined) {
        const outcome = this.scheduler.failTask(conn.key, r.taskId, error, now);
        if (outcome.kind === "stale") rejected.push({ taskId: r.taskId, reason: outcome.reason });
        else if (outcome.kind === "error-recorded") {
          rejected.push({ taskId: r.taskId, reason: error });
          touched.add(outcome.jobId);
          if (outcome.jobFailed) {
            this.revoke(outcome.dropped ?? [], "job failed");
            void this.finish(outcome.jobId, "failed", this.scheduler.jobError(outcome.jobId));
          }
        }
        continue;
      }
      const outcome = this.scheduler.completeTask(conn.key, r.taskId, (r as { output: unknown }).output, now);
      if (outcome.kind !== "accepted") {
        rejected.push({ taskId: r.taskId, reason: outcome.kind === "stale" ? outcome.reason : "rejected" });
        continue;
      }
      const meta = this.jobs.get(outcome.jobId)!;
      const pay = meta.pays.get(outcome.unitId) ?? 0;
      const commit = this.writer.enqueue({
        type: "result", jobId: outcome.jobId, unitId: outcome.unitId, output: outcome.output,
        volunteerId: conn.volunteerId, accountId: conn.accountId, pay,
      });
      accepted.push({ taskId: r.taskId, pay, commit });
      touched.add(outcome.jobId);
      commit.then(() => {
        meta.throughput.record(this.now());
        this.throughput.record(this.now());
      });
      if (outcome.jobDone) void this.finish(outcome.jobId, "completed");
    }
    // Keep the window full now; the acknowledgement follows once the results are durable.
    this.dispatch(conn);
    Promise.all(accepted.map((a) => a.commit)).then(() => {
      const credits = accepted.reduce((s, a) => s + a.pay, 0);
      conn.earned += credits;
      conn.tasksDone += accepted.length;
      send(conn.ws, { type: "ack", accepted: accepted.map((a) => a.taskId), rejected, credits });
      for (const jobId of touched) this.emit("job", jobId);
    });
  }

  private async finish(jobId: string, state: "completed" | "failed" | "cancelled", error?: string) {
    await this.writer.enqueue({ type: "finish", jobId, state, error });
    this.scheduler.removeJob(jobId);
    this.jobs.delete(jobId);
    this.log(`job ${jobId} ${state}`);
    this.emit("job", jobId);
  }

  // ---- dispatch and leases ----------------------------------------------------------

  private dispatch(conn: VolunteerConn) {
    const leased = this.scheduler.leaseTasks(conn.key, this.now());
    if (!leased.length) return;
    send(conn.ws, { type: "tasks", tasks: leased.map(toWire) });
    this.armLeaseTimer();
  }

  private dispatchAll() {
    for (const key of this.scheduler.hungryVolunteers()) {
      if (this.scheduler.stats().queued === 0) break;
      const conn = this.conns.get(key);
      if (conn) this.dispatch(conn);
    }
  }

  private revoke(freed: ExpiredLease[], reason: string) {
    const byVolunteer = new Map<string, string[]>();
    for (const f of freed) {
      const list = byVolunteer.get(f.volunteerId) ?? [];
      list.push(f.taskId);
      byVolunteer.set(f.volunteerId, list);
    }
    for (const [key, taskIds] of byVolunteer) {
      const conn = this.conns.get(key);
      if (conn) send(conn.ws, { type: "revoke", taskIds, reason });
    }
  }

  private armLeaseTimer() {
    const next = this.scheduler.nextDeadline();
    if (next === undefined || next >= this.leaseTimerAt || this.closed) return;
    clearTimeout(this.leaseTimer);
    this.leaseTimerAt = next;
    this.leaseTimer = setTimeout(() => {
      this.leaseTimerAt = Infinity;
      const expired = this.scheduler.expireLeases(this.now());
      if (expired.length) {
        this.log(`${expired.length} lease(s) expired`);
        this.revoke(expired, "lease deadline passed");
        this.dispatchAll();
      }
      this.armLeaseTimer();
    }, Math.max(0, next - this.now()) + 5);
    this.leaseTimer.unref();
  }

  /** Commits what is queued and stops; sockets are closed by the HTTP server. */
  async close() {
    this.closed = true;
    clearTimeout(this.leaseTimer);
    await this.writer.close();
  }

  /** For tests: wait until every accepted result so far is committed. */
  drain() {
    return this.writer.drain();
  }

  static newVolunteerCredentials() {
    return { volunteerId: crypto.randomBytes(12).toString("base64url"), token: crypto.randomBytes(24).toString("base64url") };
  }
}

function toWire(t: TaskAssignment): WireTask {
  return { taskId: t.taskId, jobId: t.jobId, kernel: t.kernel, params: t.params, input: t.input, deadline: t.deadline };
}
