import { EventEmitter } from "node:events";
import type { WebSocket } from "ws";
import { Scheduler } from "../scheduler";
import type { ErrorOutcome, JobSpec, RecoveredResult, RecoveryOutcome, ResultOutcome, ResultRef, UnitFailedOutcome, ValidatedOutcome, VerifyOutcome } from "../scheduler/types";
import { DEFAULT_TRUST, type TrustPolicy } from "../scheduler/credibility";
import { Verifier } from "./verifier";
import { networkOf } from "./network";
import type { Ringer } from "./ringers";
import { clampBenchmark } from "../../worker/client/benchmark";
import { PROTOCOL_VERSION, parseClientMessage, type Hello, type TaskResult } from "../../worker/protocol/messages";
import type { DbWriter } from "../store/dbWriter";
import type { BlobStore } from "../store/blobs";
import type { Db } from "../store/prisma";
import type { PersistOp } from "../services/jobs/batchSql";
import { checkVolunteer, claimAnonymousCredits, volunteerRow } from "../services/volunteers/volunteers";
import { hostKey, loadRecords } from "../services/volunteers/reliability";
import { anonAccount, userAccount } from "../services/credits/accounts";
import { Throughput } from "./progress";
import { send, windowFor, windowOf, type VolunteerConn } from "./connection";
import { atEndOfTurn } from "./cork";
import { InteractiveRouter } from "./interactive";
import { canonicalJson, digestOf } from "./digest";
import { ReliabilityBook, toRecord, type BanPolicy } from "./reliabilityBook";
import { noObserver, type CoordinatorObserver } from "../monitoring/observer";
import { Commit } from "./commit";
import { Dispatcher } from "./dispatch";
import { JobLifecycle } from "./jobLifecycle";
import type { JobMeta, Live } from "./live";
import { UserError } from "../services/errors";

export interface CoordinatorOptions {
  db: Db;
  blobs: BlobStore;
  commitIntervalMs: number;
  banPolicy: BanPolicy;
  log?: (msg: string) => void;
  observer?: CoordinatorObserver;
  /** Injected for tests; the core scheduler never reads a clock itself. */
  now?: () => number;
  /** Spot-checks, credibility and placement (see scheduler/credibility.ts); null turns them off. Default DEFAULT_TRUST. */
  trust?: TrustPolicy | null;
  /** How long a unit that errored on every volunteer online that may take it waits for another before its job fails. Default 15 s. */
  errorWaitMs?: number;
}

const HELLO_TIMEOUT_MS = 10_000;
const MAX_BAD_MESSAGES = 20;
/** Results in one frame for tasks the volunteer does not hold, beyond which the frame counts as bad. */
const STRANGER_RESULTS_ALLOWED = 512;

/**
 * The live side of the server: owns the scheduler, the volunteer sockets and the group
 * commit of results, validations and payouts. Emits "job" (jobId) when a job's progress or
 * state changed, "volunteers" when the set of volunteers changed, and "tick" for either.
 */
export class Coordinator extends EventEmitter {
  readonly scheduler: Scheduler;
  /** The server's own recomputation of built-in kernels' units (spot-checks). */
  private readonly verifier = new Verifier();
  /** Spot-checks in progress, so tests and shutdown can wait for them. */
  private readonly checking = new Set<Promise<void>>();
  /** Hosts caught and backtracked by this process, and the backtrack running now (one at a time). */
  private readonly backtracked = new Set<string>();
  private backtracking: Promise<void> = Promise.resolve();
  private readonly book: ReliabilityBook;
  /** Interactive tasks (calc): routed to the least loaded of two random volunteers. */
  readonly interactive = new InteractiveRouter({
    candidates: () => [...this.conns.values()].map((c) => ({ key: c.key, volunteerId: c.volunteerId, threads: c.threads })),
    leased: (key) => this.scheduler.heldBy(key).length,
    send: (key, msg) => {
      const c = this.conns.get(key);
      if (!c || c.ws.readyState !== c.ws.OPEN) return false;
      send(c.ws, msg);
      return true;
    },
  });
  private readonly commit: Commit;
  private readonly now: () => number;
  private readonly throughput = new Throughput();
  private connSeq = 0;
  /** The last result's output and its canonical JSON (its unit is usually validated right after). */
  private lastOutput: { value: unknown; json: string } | undefined;
  /** Volunteer ids whose first hello is not committed yet, with their token hash. */
  private readonly registering = new Map<string, string>();
  /** Verdicts waiting to be told to their volunteers at the end of this turn (see credit()). */
  private readonly creditsOut = new Map<string, { valid: string[]; invalid: string[]; credits: number }>();
  private creditsFlush = false;
  private readonly observer: CoordinatorObserver;
  private readonly live: Live;
  private readonly dispatcher: Dispatcher;
  private readonly lifecycle: JobLifecycle;

  constructor(private readonly opts: CoordinatorOptions) {
    super();
    this.setMaxListeners(0);
    // A fresh epoch per process keeps task ids from before a restart from matching new ones.
    const trust = opts.trust === undefined ? DEFAULT_TRUST : opts.trust ?? undefined;
    this.scheduler = new Scheduler({ epoch: Date.now().toString(36), ...(trust ? { trust } : {}) });
    this.now = opts.now ?? Date.now;
    this.observer = opts.observer ?? noObserver;
    this.book = new ReliabilityBook(this.scheduler, opts.banPolicy);
    this.live = {
      scheduler: this.scheduler, jobs: new Map(), conns: new Map(), observer: this.observer,
      now: this.now, log: (msg) => this.log(msg), emit: (event: string, ...args: string[]) => this.emit(event, ...args), closed: false,
    };
    this.commit = new Commit(opts.db, {
      intervalMs: opts.commitIntervalMs, observer: this.observer, log: (msg) => this.log(msg), committed: () => this.dispatcher.committed(),
    });
    this.dispatcher = new Dispatcher(this.live, {
      verifier: this.verifier, backlog: () => this.writer.size, errorWaitMs: opts.errorWaitMs ?? 15_000,
      failJob: (jobId, reason) => void this.lifecycle.finish(jobId, "failed", reason),
    });
    this.lifecycle = new JobLifecycle(this.live, {
      db: opts.db, blobs: opts.blobs, commit: this.commit, dispatch: this.dispatcher, book: this.book, verifier: this.verifier,
      outcome: (o) => this.outcome(o),
    });
  }

  /** The running jobs, the volunteers online and whether it is shutting down, as its parts share them (live.ts). */
  private get jobs() {
    return this.live.jobs;
  }

  private get conns() {
    return this.live.conns;
  }

  private get closed() {
    return this.live.closed;
  }

  /** Writes `ops` in a transaction of their own, outside the group commit (see Commit.writeAlone). */
  writeAlone(ops: PersistOp[]): Promise<void> {
    return this.commit.writeAlone(ops);
  }

  /** The database writer thread; durability.test.ts checks its connection's settings. */
  private dbWriterThread(): Promise<DbWriter> {
    return this.commit.writerThread();
  }

  /** The group commit's queue (see commit.ts). */
  private get writer() {
    return this.commit.queue;
  }

  /** Operations waiting for the database (results, verdicts, payouts…). */
  commitBacklog(): number {
    return this.writer.size;
  }

  /** Units waiting and instances running per running job, for the dashboard's queue chart. */
  queues() {
    return this.lifecycle.queues();
  }

  private log(msg: string) {
    this.opts.log?.(`[coordinator] ${msg}`);
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    // Any change to jobs or volunteers is also a change to the cluster summary.
    if (event !== "tick") super.emit("tick");
    // Volunteers came or went: who may confirm what changed at once, not at the next sweep.
    if (event === "volunteers") this.dispatcher.sweepSoon();
    return super.emit(event, ...args);
  }

  // ---- jobs -------------------------------------------------------------------------

  /** Rebuilds the queue from the database after a start; returns how many running jobs it loaded. */
  recover(): Promise<number> {
    return this.lifecycle.recover();
  }

  /** Adds a job, or (with `round`) one round of an iterative job, as a scheduler job of its own. */
  addJob(spec: JobSpec, ownerId: string, pays: Map<string, number>, recovered?: { done: string[]; pending: RecoveredResult[] }, round = 0) {
    this.lifecycle.addJob(spec, ownerId, pays, recovered, round);
  }

  /** Stops dispatch, takes leases back and refunds the unused escrow once committed. */
  cancelJob(jobId: string): Promise<boolean> {
    return this.lifecycle.cancelJob(jobId);
  }

  /** A job's progress (an iterative job's: its current round's). */
  progress(jobId: string) {
    return this.lifecycle.progress(jobId);
  }

  /** The owner accepts the results that wait for a quorum; returns how many units that decided. */
  acceptUnconfirmed(jobId: string): number {
    return this.lifecycle.acceptUnconfirmed(jobId);
  }

  /** The owner changes a running job's replication; returns how many units that decided. */
  setReplication(jobId: string, replicas: number, quorum: number): Promise<number> {
    return this.lifecycle.setReplication(jobId, replicas, quorum);
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

  volunteers() {
    return [...this.conns.values()].map((c) => ({
      key: c.key, volunteerId: c.volunteerId, userId: c.userId, agent: c.agent, threads: c.threads,
      connectedAt: c.connectedAt, tasksDone: c.tasksDone, earned: c.earned, held: this.scheduler.heldBy(c.key).length,
    }));
  }

  // ---- bans ---------------------------------------------------------------------------

  /** Bans a host ("host:<volunteerId>") or an account until `until`, closing its sockets. */
  async ban(id: string, until: Date, reason: string) {
    this.book.setBan(id, until, reason);
    await this.opts.db.reliability.upsert({ where: { id }, create: { id, bannedUntil: until, banReason: reason }, update: { bannedUntil: until, banReason: reason } });
    this.kick(id, until, reason);
  }

  async unban(id: string) {
    this.book.setBan(id, null, null);
    await this.opts.db.reliability.upsert({ where: { id }, create: { id }, update: { bannedUntil: null, banReason: null, consecutiveInvalid: 0 } });
  }

  private kick(id: string, until: Date, reason: string) {
    for (const c of this.conns.values()) {
      if (hostKey(c.volunteerId) !== id && c.accountId !== id) continue;
      send(c.ws, { type: "error", code: "banned", message: `Banned until ${until.toISOString()}: ${reason}` });
      c.ws.close(1008, "banned");
      this.drop(c);
    }
  }

  // ---- volunteer sockets ------------------------------------------------------------

  /** Takes over a freshly upgraded volunteer socket; `userId` comes from its session or API key. */
  handleConnection(ws: WebSocket, identity: { userId: string | null; address?: string }) {
    let conn: VolunteerConn | undefined;
    let bad = 0;
    let helloPending = false;
    const helloTimer = setTimeout(() => {
      if (!conn) ws.close(1008, "expected a hello message");
    }, HELLO_TIMEOUT_MS);

    ws.on("message", (data, isBinary) => {
      try {
        onMessage(data as Buffer, isBinary);
      } catch (e) {
        // Whatever one client's frame provokes stays with that client: it is told, its socket
        // closed and its leases re-queued; the process and every other volunteer carry on.
        this.observer.messageRejected();
        this.log(`volunteer frame failed: ${(e as Error)?.message ?? String(e)}`.slice(0, 300));
        send(ws, { type: "error", code: "internal", message: "this message could not be handled; the connection is closed" });
        ws.close(1011, "message could not be handled");
        if (conn) this.drop(conn);
      }
    });
    const onMessage = (data: Buffer, isBinary: boolean) => {
      // Shutting down: the commit queue is closed; what was not acknowledged is computed again.
      if (this.closed) return;
      const reject = (code: string, message: string) => {
        this.observer.messageRejected();
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
        this.hello(ws, msg, identity.userId, identity.address).then(
          (c) => {
            clearTimeout(helloTimer);
            conn = c;
            if (ws.readyState !== ws.OPEN) this.drop(c);
          },
          (e: Error) => {
            // Refusals (protocol, token, ban) are told as they are; anything else is the
            // server's trouble: logged, and the client told to try again later.
            if (!(e instanceof UserError)) {
              this.log(`hello of a volunteer failed: ${e.stack ?? e.message}`);
              send(ws, { type: "error", code: "unavailable", message: "the server could not register this volunteer; try again later" });
              ws.close(1011, "try again later");
              return;
            }
            send(ws, { type: "error", code: "hello-refused", message: e.message });
            ws.close(1008, e.message.slice(0, 120));
          },
        );
        return;
      }
      if (!conn) return reject("bad-message", "send hello first");
      // Dropped (banned, or gone while its hello was pending): the socket is closing and what
      // it still sends is moot; the scheduler no longer knows it (setWindow would throw).
      if (!this.conns.has(conn.key)) return;
      if (msg.type === "capacity") {
        conn.threads = msg.threads;
        this.scheduler.setWindow(conn.key, windowOf(conn));
        this.dispatcher.dispatch(conn);
      } else if (msg.type === "load") {
        this.interactive.report(conn.key, msg);
      } else if (msg.type === "interactive-result") {
        this.interactive.answer(conn.key, msg);
      } else {
        // More results for tasks it does not hold than it could ever have been sent: refused as
        // a bad frame (and not echoed back one by one), so junk cannot buy server work.
        const strangers = this.results(conn, msg.results, STRANGER_RESULTS_ALLOWED);
        if (strangers > STRANGER_RESULTS_ALLOWED) reject("bad-message", `${strangers} results for tasks this volunteer does not hold`);
      }
    };
    ws.on("close", () => {
      clearTimeout(helloTimer);
      if (conn) this.drop(conn);
    });
    ws.on("error", (e: Error & { code?: string }) => {
      if (e.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") {
        // ws has sent the close (1009) for a frame over MAX_WS_MESSAGE_BYTES: let the client
        // read it (terminating now would reset the connection and lose the code), but not wait
        // for an answer for long.
        this.observer.shed("frame-too-large");
        setTimeout(() => ws.terminate(), 1000).unref();
        return;
      }
      ws.terminate();
    });
  }

  private async hello(ws: WebSocket, msg: Hello, userId: string | null, address: string | undefined): Promise<VolunteerConn> {
    if (msg.protocol !== PROTOCOL_VERSION) {
      throw new UserError("BAD_REQUEST", `protocol ${msg.protocol} is not supported; this server speaks ${PROTOCOL_VERSION}`);
    }
    const benchmark = clampBenchmark(msg.benchmark);
    const db = this.opts.db;
    const { tokenHash, existed } = await checkVolunteer(db, msg, this.registering);
    // Its row goes through the group commit (a burst of hellos is a few batches, off the event
    // loop) and is durable before the welcome; until then the id is held here, so a second
    // hello with another token is refused all the same.
    if (!existed) this.registering.set(msg.volunteerId, tokenHash);
    await this.writer.enqueue({ type: "volunteer", ...volunteerRow({ ...msg, userId, benchmark }, tokenHash) })
      .finally(() => this.registering.delete(msg.volunteerId));
    // Signed in: what this id earned while anonymous moves to the account.
    if (userId && existed) await claimAnonymousCredits(db, userId, msg.volunteerId);
    const accountId = userId ? userAccount(userId) : anonAccount(msg.volunteerId);
    const host = hostKey(msg.volunteerId);
    const records = await loadRecords(this.opts.db, [host, accountId]);
    for (const row of records.values()) this.book.seed(row);
    const ban = this.book.activeBan([host, accountId], new Date(this.now()));
    if (ban) throw new UserError("FORBIDDEN", `banned until ${ban.until.toISOString()}: ${ban.reason}`);
    const conn: VolunteerConn = {
      key: `${msg.volunteerId}~${++this.connSeq}`,
      volunteerId: msg.volunteerId, accountId, userId, agent: msg.agent, threads: msg.threads,
      connectedAt: this.now(), earned: 0, tasksDone: 0, benchmark, ws,
    };
    if (ws.readyState !== ws.OPEN || this.closed) return conn;
    this.conns.set(conn.key, conn);
    this.scheduler.addVolunteer(conn.key, {
      window: windowFor(msg.threads), host: msg.volunteerId, account: accountId,
      hostRecord: toRecord(records.get(host)!), accountRecord: toRecord(records.get(accountId)!),
      speed: benchmark, network: networkOf(address),
    });
    send(ws, {
      type: "welcome", protocol: PROTOCOL_VERSION, volunteerId: msg.volunteerId, account: accountId,
      signedIn: !!userId, window: windowFor(msg.threads),
    });
    this.log(`volunteer ${conn.key} joined (${msg.agent}, ${msg.threads} threads${userId ? ", signed in" : ""})`);
    this.emit("volunteers");
    this.dispatcher.dispatch(conn);
    return conn;
  }

  private drop(conn: VolunteerConn) {
    if (!this.conns.delete(conn.key)) return;
    this.dispatcher.forgetRinger(conn);
    this.interactive.forget(conn.key);
    const requeued = this.scheduler.removeVolunteer(conn.key, this.now());
    this.log(`volunteer ${conn.key} left; ${requeued.length} task(s) re-queued`);
    this.emit("volunteers");
    if (requeued.length) this.dispatcher.dispatchAll();
  }

  // ---- results and validation ---------------------------------------------------------

  /** Records a frame of results; returns how many were for tasks this volunteer does not hold. */
  private results(conn: VolunteerConn, results: TaskResult[], echoAtMost: number): number {
    const now = this.now();
    let strangers = 0;
    const recorded: string[] = [];
    // Batches commit in order: once the last result of this frame is durable, all are.
    let lastCommit: Promise<void> | undefined;
    const rejected: Array<{ taskId: string; reason: string }> = [];
    const waiting = new Set<string>();
    for (const r of results) {
      const ringer = this.dispatcher.returnedRinger(conn, r.taskId);
      if (ringer) {
        // Answered as a real task would be: an error or a malformed output is rejected with
        // its reason, anything else accepted (and judged once the server's answer is ready).
        const error = "error" in r ? r.error : this.outputError(this.jobs.get(ringer.jobId), (r as { output: unknown }).output);
        if (error !== undefined) {
          this.observer.taskError();
          rejected.push({ taskId: r.taskId, reason: error });
          conn.ringer = undefined;
          this.scheduler.setWindow(conn.key, windowOf(conn));
        } else {
          recorded.push(r.taskId);
          this.ringerAnswered(conn, r, ringer);
        }
        continue;
      }
      const task = this.scheduler.task(r.taskId);
      if (!task || task.volunteerId !== conn.key) {
        // Usually a result that crossed a revoke or a lease expiry: it is told so.
        if (++strangers <= echoAtMost) rejected.push({ taskId: r.taskId, reason: task ? "not-holder" : "unknown-task" });
        continue;
      }
      const meta = this.jobs.get(task.jobId)!;
      const error = "error" in r ? r.error : this.outputError(meta, (r as { output: unknown }).output);
      if (error !== undefined) {
        this.observer.taskError();
        rejected.push({ taskId: r.taskId, reason: error });
        this.errored(this.scheduler.failTask(conn.key, r.taskId, error, now), error);
        continue;
      }
      const output = (r as { output: unknown }).output;
      // The canonical text is both what replicas are compared by and what is stored.
      const outputJson = canonicalJson(output);
      const digest = digestOf(outputJson);
      this.lastOutput = { value: output, json: outputJson };
      const turnaroundMs = Math.max(0, now - (task.deadline - meta.leaseMs));
      this.observer.resultReceived(turnaroundMs);
      const outcome = this.scheduler.completeTask(conn.key, r.taskId, output, digest, now);
      if (outcome.kind === "stale") {
        rejected.push({ taskId: r.taskId, reason: outcome.reason });
        continue;
      }
      // The raw result first: a restart must find it even if its unit is not decided yet.
      const commit = this.writer.enqueue({
        type: "result", taskId: r.taskId, jobId: meta.jobId, unitId: task.unitId, host: conn.volunteerId,
        account: conn.accountId, outputJson, digest, turnaroundMs,
        // Measured work, for calibration and display only: payment uses the unit's estimate.
        ...("ms" in r && typeof r.ms === "number" ? { cpuMs: r.ms, workMs: r.ms * conn.benchmark } : {}),
      });
      recorded.push(r.taskId);
      lastCommit = commit;
      // A result that waits for its quorum changes the job's counts once it is stored.
      if (outcome.kind !== "validated") waiting.add(meta.jobId);
      this.outcome(outcome);
    }
    // A volunteer left with no task waiting behind the ones its threads run is refilled now,
    // so no thread idles however long the commit takes. Otherwise the refill waits for the
    // results to be durable and leaves with the acknowledgement (one write instead of two):
    // the tasks still queued on the volunteer cover the commit, and dispatch does not outrun
    // the database.
    const window = windowFor(conn.threads);
    if (window - this.scheduler.freeSlots(conn.key) <= conn.threads) this.dispatcher.dispatch(conn);
    (lastCommit ?? Promise.resolve()).then(() => {
      conn.tasksDone += recorded.length;
      if (this.conns.has(conn.key)) this.dispatcher.dispatch(conn);
      if (recorded.length || rejected.length) send(conn.ws, { type: "ack", accepted: recorded, rejected });
      for (const id of waiting) this.emit("job", id);
    }).catch((e: Error) => this.log(`acknowledging results failed: ${e.message}`));
    return strangers;
  }

  /** Why an output does not fit its kernel's output schema, if it does not. */
  private outputError(meta: JobMeta | undefined, output: unknown): string | undefined {
    const out = meta?.output?.safeParse(output);
    return out && !out.success ? `invalid output: ${out.error.issues[0].path.join(".")}: ${out.error.issues[0].message}` : undefined;
  }

  private errored(outcome: ReturnType<Scheduler["failTask"]>, error: string) {
    if (outcome.kind !== "error-recorded") return;
    const o = outcome as ErrorOutcome;
    const jobId = this.jobs.get(o.jobId)?.jobId ?? o.jobId;
    void this.writer.enqueue({ type: "error", taskId: o.taskId, jobId, unitId: o.unitId, host: o.host, account: o.account, error });
    void this.writer.enqueue({ type: "reliability", rows: this.book.rows([hostKey(o.host), o.account]) });
    if (o.jobFailed) {
      this.dispatcher.revoke(o.dropped, "job failed");
      void this.lifecycle.finish(o.jobId, "failed", this.scheduler.jobError(o.jobId));
    } else if (o.requeued) {
      this.dispatcher.dispatchAll();
    }
    this.emit("job", jobId);
  }

  /** Acts on what the scheduler made of a result, a recovered result or a spot-check. */
  private outcome(o: ResultOutcome | RecoveryOutcome) {
    switch (o.kind) {
      case "stale":
        return;
      case "pending":
        if (o.requeued) this.dispatcher.dispatchAll();
        return;
      case "verify":
        this.dispatcher.revoke(o.revoked, "unit already computed");
        this.check(o);
        return;
      default:
        this.decided(o);
    }
  }

  /**
   * Spot-check: the server recomputes the unit and the scheduler decides it by that answer.
   * Hosts whose result disagrees with it are caught: banned with their accounts at once, and
   * everything they returned is backtracked.
   */
  private check(o: VerifyOutcome) {
    const done = (async () => {
      let outcome: ResultOutcome | undefined;
      let computed: Awaited<ReturnType<Verifier["recompute"]>> | undefined;
      try {
        computed = await this.verifier.recompute(o.kernel, o.params, o.input);
      } catch (e) {
        this.log(`spot-check of unit ${o.unitId} could not run (${(e as Error).message}); decided without it`);
      }
      if (this.closed) return;
      if (computed) {
        this.lastOutput = { value: computed.output, json: computed.json };
        outcome = this.scheduler.checked(o.jobId, o.unitId, computed.output, computed.digest);
      } else {
        outcome = this.scheduler.uncheckable(o.jobId, o.unitId);
      }
      if (!outcome) return;
      this.observer.spotChecked(outcome.kind === "validated" ? (outcome.caught?.length ?? 0) : 0);
      const caught = outcome.kind === "validated" ? outcome.caught ?? [] : [];
      // Banned before the verdicts are persisted, so the rows written with them carry the ban.
      const meta = this.jobs.get(o.jobId);
      const reason = `failed a spot-check: a result for unit ${o.index} of job ${meta?.jobId ?? o.jobId} differs from the server's own computation`;
      const until = this.banCaught(caught, reason);
      this.outcome(outcome);
      for (const r of caught) this.caught(r, until, reason);
      // A host on probation got no work while its results awaited this verdict.
      if (outcome.kind === "validated") {
        for (const r of outcome.valid) {
          const c = r.volunteer === undefined ? undefined : this.conns.get(r.volunteer);
          if (c && this.scheduler.freeSlots(c.key) > 0) this.dispatcher.dispatch(c);
        }
      }
    })().catch((e: Error) => this.log(`spot-check of unit ${o.unitId} failed: ${e.stack ?? e.message}`));
    this.track(done);
  }

  /** A ringer came back: right, it counts as a passed spot-check; wrong, the host is caught. */
  private ringerAnswered(conn: VolunteerConn, r: TaskResult, ringer: Ringer) {
    conn.ringer = undefined;
    this.scheduler.setWindow(conn.key, windowOf(conn));
    const done = (async () => {
      const expected = await ringer.expected;
      if (expected === undefined || this.closed) return;
      const output = (r as { output: unknown }).output;
      if (digestOf(canonicalJson(output)) === expected) {
        this.observer.spotChecked(0);
        this.scheduler.passedRinger(conn.key);
        void this.writer.enqueue({ type: "reliability", rows: this.book.rows([hostKey(conn.volunteerId), conn.accountId]) });
        return;
      }
      this.observer.spotChecked(1);
      const meta = this.jobs.get(ringer.jobId);
      const reason = `failed a spot-check: a known-answer ${ringer.kernel} task of job ${meta?.jobId ?? ringer.jobId} came back wrong`;
      const ref = { taskId: r.taskId, host: conn.volunteerId, account: conn.accountId, output, digest: "" };
      this.caught(ref, this.banCaught([ref], reason), reason);
    })().catch((e: Error) => this.log(`checking a ringer failed: ${e.message}`));
    this.track(done);
  }

  /**
   * Bans the hosts and accounts of results proved wrong in the book at once, before any row of
   * the verdict is persisted (those rows then carry the ban); returns when the bans end.
   */
  private banCaught(caught: ResultRef[], reason: string): Date {
    const until = new Date(this.now() + this.opts.banPolicy.hours * 3600_000);
    for (const r of caught) for (const id of [hostKey(r.host), r.account]) this.book.setBan(id, until, reason);
    return until;
  }

  /** Work of the trust policy in flight (checks, backtracks), which drain() waits for. */
  private track(work: Promise<void>) {
    this.checking.add(work);
    void work.finally(() => this.checking.delete(work));
  }

  /** A host proved to cheat: its sockets close, and everything it returned is backtracked. */
  private caught(r: ResultRef, until: Date, reason: string) {
    // Caught again on another of its results still in a check: already banned and backtracked.
    if (this.backtracked.has(r.host)) return;
    const ids = [hostKey(r.host), r.account];
    this.log(`caught ${ids.join(" and ")}: ${reason}`);
    void this.writer.enqueue({ type: "reliability", rows: this.book.rows(ids) });
    for (const id of ids) this.kick(id, until, reason);
    this.track(this.backtrack(r.host, r.account, reason).catch((e: Error) => this.log(`backtracking ${r.host} failed: ${e.stack ?? e.message}`)));
  }

  /**
   * Invalidates every result the host or account returned and reopens what they helped decide
   * (backtrackSql.ts), then rebuilds the affected running jobs from the database. Once per
   * host (it is banned: nothing it sends later counts), one backtrack at a time.
   */
  private backtrack(host: string, account: string, reason: string): Promise<void> {
    if (this.backtracked.has(host)) return Promise.resolve();
    this.backtracked.add(host);
    const run = this.backtracking.then(() => this.backtrackNow(host, account, reason));
    this.backtracking = run.catch(() => undefined);
    return run;
  }

  private async backtrackNow(host: string, account: string, reason: string) {
    // Its last results, and the verdicts on them, are in the database first.
    await this.writer.committedSoFar();
    const touched = await this.opts.db.result.findMany({
      where: { OR: [{ volunteerId: host }, { accountId: account }], state: { in: ["valid", "pending"] } },
      select: { jobId: true }, distinct: ["jobId"],
    });
    const rewrite = async () => {
      await this.writer.enqueue({ type: "backtrack", host, account, reason });
      await this.writer.committedSoFar();
    };
    await this.lifecycle.reopen(touched.map((t) => t.jobId), rewrite, `results of ${host} backtracked`);
  }

  /** A unit was decided: persist the verdicts and payouts, tell the volunteers, move on. */
  private decided(o: ValidatedOutcome | UnitFailedOutcome) {
    if (o.kind === "unit-failed") {
      this.log(`job ${o.jobId} failed: ${o.reason}`);
      this.dispatcher.revoke(o.dropped, "job failed");
      void this.lifecycle.finish(o.jobId, "failed", o.reason);
      return;
    }
    const meta = this.jobs.get(o.jobId)!;
    const pay = meta.pays.get(o.unitId) ?? 0;
    // At most a quorum of valid results is paid, and never the owner's own: they would pay themselves.
    let unpaid = meta.quorum;
    const owner = meta.spec.owner;
    const valid = o.valid.map((r) => {
      const paid = r.account !== owner && unpaid > 0 ? (unpaid--, pay) : 0;
      return { taskId: r.taskId, host: r.host, account: r.account, pay: paid, volunteer: this.socketOf(r) };
    });
    const invalid = o.invalid.map((r) => ({ taskId: r.taskId, host: r.host, account: r.account, pay: 0, volunteer: this.socketOf(r) }));
    // The owner's decisions prove nothing about anybody: no record, streak or ban moves.
    const verdicts = o.byOwner ? { rows: [], banned: [] } : this.book.verdicts(valid, invalid, new Date(this.now()));
    this.observer.validated(valid.length, invalid.length);
    // Usually the output of the result that just came in, already serialised.
    const last = this.lastOutput;
    const json = last && last.value === o.canonical ? last.json : canonicalJson(o.canonical);
    const commit = this.writer.enqueue({ type: "validated", jobId: meta.jobId, unitId: o.unitId, canonicalJson: json, valid, invalid });
    if (verdicts.rows.length) void this.writer.enqueue({ type: "reliability", rows: verdicts.rows });
    this.dispatcher.revoke(o.revoked, "unit already validated");
    commit.then(() => {
      meta.throughput.record(this.now());
      this.throughput.record(this.now());
      this.credit(valid, invalid);
      for (const id of verdicts.banned) {
        const ban = this.book.activeBan([id], new Date(this.now()));
        this.log(`banned ${id}: ${ban?.reason}`);
        if (ban) this.kick(id, ban.until, ban.reason);
      }
      this.emit("job", meta.jobId);
    });
    if (o.jobDone) void this.lifecycle.finish(o.jobId, "completed");
    if (o.revoked.length) this.dispatcher.dispatchAll();
  }

  /**
   * The socket to tell of a verdict: the one that sent the result or, for a result read back
   * from the database (after a restart or a backtrack), the host's socket if it is connected.
   */
  private socketOf(r: ResultRef): string | undefined {
    if (r.volunteer !== undefined) return r.volunteer;
    for (const c of this.conns.values()) if (c.volunteerId === r.host) return c.key;
    return undefined;
  }

  /**
   * Tells each volunteer (still connected) which of its results were paid or found invalid.
   * Verdicts of one commit are gathered and sent as one message per volunteer at the end of
   * the turn, not one per unit.
   */
  private credit(valid: Array<{ taskId: string; pay: number; volunteer?: string }>, invalid: Array<{ taskId: string; volunteer?: string }>) {
    const entry = (key: string) => this.creditsOut.get(key) ?? this.creditsOut.set(key, { valid: [], invalid: [], credits: 0 }).get(key)!;
    for (const r of valid) if (r.volunteer) (entry(r.volunteer).valid.push(r.taskId), (entry(r.volunteer).credits += r.pay));
    for (const r of invalid) if (r.volunteer) entry(r.volunteer).invalid.push(r.taskId);
    if (this.creditsFlush || !this.creditsOut.size) return;
    this.creditsFlush = true;
    atEndOfTurn(() => {
      this.creditsFlush = false;
      for (const [key, c] of this.creditsOut) {
        const conn = this.conns.get(key);
        if (!conn) continue;
        conn.earned += c.credits;
        send(conn.ws, { type: "credit", ...c });
      }
      this.creditsOut.clear();
    });
  }

  /** Commits what is queued and stops; sockets are closed by the HTTP server. */
  async close() {
    this.live.closed = true;
    this.interactive.close();
    this.verifier.close();
    this.dispatcher.stop();
    await this.commit.close();
  }

  /** For tests: wait until everything decided so far is committed. */
  async drain() {
    while (this.checking.size) await Promise.all([...this.checking]);
    return this.writer.drain();
  }
}

