import { EventEmitter } from "node:events";
import type { WebSocket } from "ws";
import { Scheduler } from "../scheduler";
import type { JobSpec, RecoveredResult } from "../scheduler/types";
import { DEFAULT_TRUST, type TrustPolicy } from "../scheduler/credibility";
import { Verifier } from "./verifier";
import { networkOf } from "./network";
import { clampBenchmark } from "../../worker/client/benchmark";
import { PROTOCOL_VERSION, parseClientMessage, type Hello } from "../../worker/protocol/messages";
import type { DbWriter } from "../store/dbWriter";
import type { BlobStore } from "../store/blobs";
import type { Db } from "../store/prisma";
import type { PersistOp } from "../services/jobs/batchSql";
import { checkVolunteer, claimAnonymousCredits, volunteerRow } from "../services/volunteers/volunteers";
import { hostKey, loadRecords } from "../services/volunteers/reliability";
import { anonAccount, userAccount } from "../services/credits/accounts";
import { send, windowFor, windowOf, type VolunteerConn } from "./connection";
import { atEndOfTurn } from "./cork";
import { InteractiveRouter } from "./interactive";
import { ReliabilityBook, toRecord, type BanPolicy } from "./reliabilityBook";
import { noObserver, type CoordinatorObserver } from "../monitoring/observer";
import { Commit } from "./commit";
import { Dispatcher } from "./dispatch";
import { JobLifecycle } from "./jobLifecycle";
import { ResultPipeline } from "./resultPipeline";
import { CaughtHosts } from "./caughtHosts";
import type { Live } from "./live";
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
  private connSeq = 0;
  /** Volunteer ids whose first hello is not committed yet, with their token hash. */
  private readonly registering = new Map<string, string>();
  /** Verdicts waiting to be told to their volunteers at the end of this turn (see credit()). */
  private readonly creditsOut = new Map<string, { valid: string[]; invalid: string[]; credits: number }>();
  private creditsFlush = false;
  private readonly observer: CoordinatorObserver;
  private readonly live: Live;
  private readonly dispatcher: Dispatcher;
  private readonly lifecycle: JobLifecycle;
  private readonly pipeline: ResultPipeline;

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
      outcome: (o) => this.pipeline.outcome(o),
    });
    const kick = (id: string, until: Date, reason: string) => this.kick(id, until, reason);
    const caught = new CaughtHosts(this.live, {
      db: opts.db, queue: this.writer, book: this.book, lifecycle: this.lifecycle, banHours: opts.banPolicy.hours, kick,
    });
    this.pipeline = new ResultPipeline(this.live, {
      queue: this.writer, dispatch: this.dispatcher, lifecycle: this.lifecycle, caught, book: this.book, verifier: this.verifier,
      notices: { credit: (valid, invalid) => this.credit(valid, invalid), kick },
    });
  }

  /** The volunteers online and whether it is shutting down, as its parts share them (live.ts). */
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
      jobsRunning: s.runningJobs, tasksPerSecond: this.pipeline.throughput.rate(this.now()), pendingCommits: this.writer.size,
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
        const strangers = this.pipeline.results(conn, msg.results, STRANGER_RESULTS_ALLOWED);
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
    await this.pipeline.settled();
    return this.writer.drain();
  }
}

